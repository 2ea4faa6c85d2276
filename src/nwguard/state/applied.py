"""The port-filter state last committed to the kernel, kept so the next process diffs against it.

``<state>/applied/``::

    templates.json     the shared chains and slot sets (the IR's canonical form)
    ports/<port>.json  each port's part: which chains and sets it uses, its set elements,
                       its dispatch entries
    generation         a token that changes with every save

Runtime state: no fsync (a host crash empties /run anyway; a killed process does not lose
written pages). Each file is replaced atomically; reference counts are not stored but
recounted on load. Files of an older version (version 2 held nftables JSON) are not
migrated: :meth:`AppliedState.load` answers None and the engine recompiles the bound ports.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from nwguard.compile.kernel_state import KernelState
from nwguard.errors import StateError
from nwguard.ir import codec
from nwguard.ir.ports import Contribution, FilterRule, KeyPart
from nwguard.records import ValueRecord
from nwguard.state.persist import Document, Format, RecordDir

GENERATION = "generation"


class Templates(ValueRecord):
    chains: dict[str, tuple[FilterRule, ...]]
    sets: dict[str, tuple[KeyPart, ...]]

    def to_json(self) -> dict[str, Any]:
        return {
            "chains": {n: [codec.encode(r) for r in rules] for n, rules in self.chains.items()},
            "sets": {n: codec.encode(key) for n, key in self.sets.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Templates:
        return cls(
            {n: codec.decode(rules) for n, rules in d["chains"].items()},
            {n: codec.decode(key) for n, key in d["sets"].items()},
        )


class PortFile(ValueRecord):
    """A port's file: its chains and sets by name (their content is in the templates)."""

    chains: tuple[str, ...]
    sets: tuple[str, ...]
    elements: dict[str, list[tuple[Any, ...]]]
    dispatch: dict[str, str]
    fallback_rules: int = 0

    @classmethod
    def of(cls, c: Contribution) -> PortFile:
        return cls(
            tuple(sorted(c.chains)), tuple(sorted(c.sets)), c.elements, c.dispatch, c.fallback_rules
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "chains": list(self.chains), "sets": list(self.sets),
            "elements": {s: [list(k) for k in keys] for s, keys in self.elements.items()},
            "dispatch": self.dispatch, "fallback_rules": self.fallback_rules,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PortFile:
        return cls(
            tuple(d["chains"]), tuple(d["sets"]),
            {s: [tuple(k) for k in keys] for s, keys in d["elements"].items()},
            dict(d["dispatch"]), int(d.get("fallback_rules", 0)),
        )  # fmt: skip


TEMPLATES = Format("applied templates", 3, Templates.from_json)
PORT = Format("applied port", 1, PortFile.from_json, unversioned=1)


class AppliedState:
    """The applied state of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.templates = Document(directory / "templates.json", TEMPLATES)
        self.ports = RecordDir(directory / "ports", PORT)

    def exists(self) -> bool:
        return self.templates.exists()

    def forget(self) -> None:
        """Make the next change send the whole state (what was saved cannot be used)."""
        self.templates.remove()

    def save(
        self, state: KernelState, ports: set[str] | None = None, templates_changed: bool = True
    ) -> None:
        """Persist the parts of ``ports`` (default: all) and, if changed, the templates."""
        self.ports.dir.mkdir(parents=True, exist_ok=True)
        if ports is None:  # the whole state: no file of a port outside it may stay
            self.ports.prune(state.ports)
        for port in state.ports.keys() if ports is None else ports:
            c = state.ports.get(port)
            if c is None:
                self.ports.remove(port)
            else:
                self.ports.put(port, PortFile.of(c))
        if templates_changed or not self.templates.exists():
            self.templates.write(Templates(state.chains, state.sets))
        # A new token per save: a long-lived process (nwguardd) keeps its loaded state while the
        # token is the one it wrote, and reloads after anyone else's change.
        token = f"{os.getpid()} {time.time_ns()} {os.urandom(6).hex()}\n"
        from nwguard.state.files import atomic_write

        atomic_write(self.dir / GENERATION, token, durable=False)

    def generation(self) -> str | None:
        """The token :meth:`save` wrote last (None before the first save)."""
        try:
            return (self.dir / GENERATION).read_text()
        except FileNotFoundError:
            return None

    def load(self) -> KernelState | None:
        """What :meth:`save` wrote: an empty state if nothing was, None if it cannot be used
        (another version, or damaged): the caller recompiles the bound ports."""
        try:
            t = self.templates.read()
        except StateError:
            return None
        if t is None:
            return KernelState()
        state = KernelState()
        for port in self.ports.keys():  # noqa: SIM118 - a RecordDir, not a dict
            try:
                f = self.ports.get(port)
                if f is None:
                    continue
                contrib = Contribution(
                    chains={n: t.chains[n] for n in f.chains},
                    sets={n: t.sets[n] for n in f.sets},
                    elements=f.elements, dispatch=f.dispatch, fallback_rules=f.fallback_rules,
                )  # fmt: skip
            except (StateError, KeyError):
                # A writer killed between the port files and templates.json: the kernel holds
                # one whole transaction, but this port's file does not match the templates.
                # Leave it out; nwguardd's start recompiles every bound port.
                continue
            state._add(port, contrib)
        return state
