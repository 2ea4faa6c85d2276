"""The port-filter state last committed to the kernel, kept so the next process diffs against it.

``<state>/applied/``::

    templates.json       the shared chains and slot sets (the IR's canonical form)
    ports.json           every port's part: which chains and sets it uses, its set elements,
                         its dispatch entries; it names its journal
    ports.<token>.log    the journal: one JSON line per port changed since ports.json was
                         written (``{"port": name, "part": {...} or null}``)
    generation           a token that changes with every save

A change of a few ports appends their lines to the journal (the cost does not grow with the
number of bound ports); when the journal outgrows the snapshot, or for a whole state, the
snapshot is written anew under a new token and the old journal removed. A process loads two
files, not one per port. Runtime state: no fsync (a host crash empties /run anyway; a killed
process does not lose written pages). Reference counts are not stored but recounted on load.
Files of an older version (version 3 kept a file per port) are not migrated:
:meth:`AppliedState.load` answers None and the engine recompiles the bound ports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from nwguard.compile.kernel_state import KernelState
from nwguard.errors import StateError
from nwguard.ir import codec
from nwguard.ir.ports import Contribution, FilterRule, KeyPart
from nwguard.records import ValueRecord
from nwguard.state.persist import Document, Format

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


class Snapshot(ValueRecord):
    """ports.json: every port's part when it was written, and the name of its journal."""

    log: str
    ports: dict[str, PortFile]

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "ports": {p: f.to_json() for p, f in self.ports.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Snapshot:
        return cls(str(d["log"]), {p: PortFile.from_json(f) for p, f in d["ports"].items()})


TEMPLATES = Format("applied templates", 4, Templates.from_json)
SNAPSHOT = Format("applied ports", 1, Snapshot.from_json)


class AppliedState:
    """The applied state of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.templates = Document(directory / "templates.json", TEMPLATES)
        self.snapshot = Document(directory / "ports.json", SNAPSHOT)

    def exists(self) -> bool:
        return self.templates.exists()

    def forget(self) -> None:
        """Make the next change send the whole state (what was saved cannot be used)."""
        self.templates.remove()

    def _log(self, token: str) -> Path:
        return self.dir / f"ports.{token}.log"

    def save(
        self, state: KernelState, ports: set[str] | None = None, templates_changed: bool = True
    ) -> None:
        """Persist the parts of ``ports`` (default: all) and, if changed, the templates."""
        self.dir.mkdir(parents=True, exist_ok=True)
        token = self._token() if ports is not None and self.templates.exists() else None
        if token is None or not self._append(token, state, ports or set()):
            self._write_snapshot(state)
        if templates_changed or not self.templates.exists():
            self.templates.write(Templates(state.chains, state.sets))
        # A new token per save: a long-lived process (nwguardd) keeps its loaded state while the
        # token is the one it wrote, and reloads after anyone else's change.
        stamp = f"{os.getpid()} {time.time_ns()} {os.urandom(6).hex()}\n"
        from nwguard.state.files import atomic_write

        atomic_write(self.dir / GENERATION, stamp, durable=False)

    def _token(self) -> str | None:
        """The journal token of ports.json (None: no usable snapshot, write one)."""
        try:
            with open(self.snapshot.path, "rb") as f:
                head = f.read(96)  # {"version":1,"log":"<token>",...: no need to parse it all
        except FileNotFoundError:
            return None
        prefix = b'{"version":1,"log":"'
        end = head.find(b'"', len(prefix))
        if not head.startswith(prefix) or end < 0:
            return None
        return head[len(prefix) : end].decode("ascii", "replace")

    def _append(self, token: str, state: KernelState, ports: set[str]) -> bool:
        """Journal the parts of ``ports``; False when the journal should become a snapshot."""
        lines = []
        for port in sorted(ports):
            c = state.ports.get(port)
            part = None if c is None else PortFile.of(c).to_json()
            lines.append(json.dumps({"port": port, "part": part}, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        path = self._log(token)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(data) > max(1 << 16, self.snapshot.path.stat().st_size):
            return False
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a writer was killed mid-line: do not glue onto it
            os.write(fd, data)
        finally:
            os.close(fd)
        return True

    def _write_snapshot(self, state: KernelState) -> None:
        token = os.urandom(6).hex()
        ports = {p: PortFile.of(c) for p, c in state.ports.items()}
        self.snapshot.write(Snapshot(token, ports))
        for name in os.listdir(self.dir):  # journals of older snapshots
            if name.startswith("ports.") and name.endswith(".log") and name != f"ports.{token}.log":
                os.unlink(self.dir / name)
        if (self.dir / "ports").is_dir():  # version 3's file per port
            import shutil

            shutil.rmtree(self.dir / "ports")

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
            snap = self.snapshot.read()
        except StateError:
            return None
        if t is None:
            return KernelState()
        if snap is None:
            return None
        files: dict[str, PortFile | None] = dict(snap.ports)
        files.update(self._journal(snap.log))
        state = KernelState()
        for port, f in files.items():
            if f is None:
                continue
            try:
                contrib = Contribution(
                    chains={n: t.chains[n] for n in f.chains},
                    sets={n: t.sets[n] for n in f.sets},
                    elements=f.elements, dispatch=f.dispatch, fallback_rules=f.fallback_rules,
                )  # fmt: skip
            except KeyError:
                # A writer killed between the port parts and templates.json: the kernel holds
                # one whole transaction, but this port's part does not match the templates.
                # Leave it out; nwguardd's start recompiles every bound port.
                continue
            state._add(port, contrib)
        return state

    def _journal(self, token: str) -> dict[str, PortFile | None]:
        """The journal's parts in order, the last per port (a torn or bad line is skipped)."""
        try:
            data = self._log(token).read_bytes()
        except FileNotFoundError:
            return {}
        out: dict[str, PortFile | None] = {}
        for line in data.splitlines():
            try:
                entry = json.loads(line)
                part = entry["part"]
                out[str(entry["port"])] = None if part is None else PortFile.from_json(part)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a writer killed mid-line; nwguardd's start recompiles every port
        return out
