"""The port-filter state last committed to the kernel, kept so the next process diffs against it.

``<state>/applied/``::

    templates.json       the shared chains and slot sets (the IR's canonical form)
    ports.json           every port's part: which chains and sets it uses, its set elements,
                         its dispatch entries; the reference counts of chains and sets; it
                         names its journal. One JSON object, laid out one port per line
    ports.<token>.log    the journal: one JSON line per port changed since ports.json was
                         written (``{"port": name, "part": {...} or null}``)
    generation           a token that changes with every save

A change of a few ports appends their lines to the journal (the cost does not grow with the
number of bound ports); when the journal outgrows a sixteenth of the snapshot, or for a whole
state, the snapshot is written anew under a new token and the old journal removed. A process
loads two files, not one per port, and decodes only the ports it touches: a port's line stays
text (:class:`PortParts`) until asked for, the reference counts come from the snapshot's head
and the journal's lines. Runtime state: no fsync (a host crash empties /run anyway; a killed
process does not lose written pages). A snapshot of version 1 (no reference counts) is still
read, whole; files of an older layout (version 3 of the templates kept a file per port) are
not migrated: :meth:`AppliedState.load` answers None and the engine recompiles the bound ports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from nwguard.compile.kernel_state import (
    L4_ROLES,
    KernelState,
    chain_needs_ip_hooks,
    uses_ip_layer,
)
from nwguard.errors import StateError
from nwguard.ir import codec
from nwguard.ir.ports import Contribution, FilterRule, KeyPart
from nwguard.records import ValueRecord
from nwguard.state.persist import Document, Format

GENERATION = "generation"
_SEPS = (",", ":")


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
    """A port's part: its chains and sets by name (their content is in the templates)."""

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

    def contribution(self, t: Templates) -> Contribution:
        """The port's contribution (KeyError: it names a chain or set ``t`` lacks)."""
        return Contribution(
            chains={n: t.chains[n] for n in self.chains}, sets={n: t.sets[n] for n in self.sets},
            elements=self.elements, dispatch=self.dispatch, fallback_rules=self.fallback_rules,
        )  # fmt: skip


class Snapshot(ValueRecord):
    """ports.json read whole: every port's part when it was written, the name of its journal."""

    log: str
    ports: dict[str, PortFile]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Snapshot:
        return cls(str(d["log"]), {p: PortFile.from_json(f) for p, f in d["ports"].items()})


TEMPLATES = Format("applied templates", 4, Templates.from_json)
# Version 2 adds "refs" and one port per line; version 1 reads the same (whole, refs recounted).
SNAPSHOT = Format("applied ports", 2, Snapshot.from_json, migrations={1: lambda d: d})
_HEAD = '{"version":2,"log":"'
_PORTS = ',"ports":{'


class _Part:
    """A port's part not decoded yet: its JSON text, or the object parsed from the journal."""

    __slots__ = ("data",)

    def __init__(self, data: str | dict[str, Any]) -> None:
        self.data = data

    def text(self) -> str:
        return self.data if isinstance(self.data, str) else json.dumps(self.data, separators=_SEPS)

    def parsed(self) -> dict[str, Any]:
        return json.loads(self.data) if isinstance(self.data, str) else self.data

    def usage(self, t: Templates) -> tuple[list[str], bool]:
        """The chains and sets the part uses, and whether it needs the IP layer
        (``kernel_state.uses_ip_layer``), without decoding it (parsed once)."""
        d = self.parsed()
        ip = bool(d["dispatch"].keys() & L4_ROLES) or any(
            chain_needs_ip_hooks(n, t.chains[n]) for n in d["chains"]
        )
        return [*d["chains"], *d["sets"]], ip


class PortParts(dict[str, Contribution]):
    """The ports of a loaded state: a dict whose values are decoded on first access.

    A change of one port reads one port's part; every way of reading values (indexing,
    ``get``, ``values``, ``items``, iteration by ``dict()``, comparison) decodes what it
    returns. ``copy`` keeps what is not decoded yet (``KernelState.with_port`` copies).
    """

    __slots__ = ("_templates", "_where")

    def __init__(self, templates: Templates, where: Path) -> None:
        super().__init__()
        self._templates, self._where = templates, where

    def _decode(self, port: str, raw: _Part) -> Contribution:
        try:
            c = PortFile.from_json(raw.parsed()).contribution(self._templates)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{self._where}: port {port}: not a valid part ({exc})") from None
        dict.__setitem__(self, port, c)
        return c

    def __getitem__(self, port: str) -> Contribution:
        v = dict.__getitem__(self, port)
        return self._decode(port, v) if isinstance(v, _Part) else v

    def get(self, port: str, default: Any = None) -> Any:
        if port not in self:
            return default
        return self[port]

    def pop(self, port: str, *default: Any) -> Any:
        if port not in self:
            return dict.pop(self, port, *default)
        v = self[port]
        dict.__delitem__(self, port)
        return v

    def setdefault(self, port: str, default: Any = None) -> Any:
        if port not in self:
            dict.__setitem__(self, port, default)
        return self[port]

    def popitem(self) -> tuple[str, Contribution]:
        port = next(reversed(dict.keys(self)))
        return port, self.pop(port)

    def __iter__(self) -> Iterator[str]:  # defined, so dict(x) reads values through x[port]
        return iter(dict.keys(self))

    def values(self) -> Any:
        return [self[p] for p in dict.keys(self)]

    def items(self) -> Any:
        return [(p, self[p]) for p in dict.keys(self)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and dict(self.items()) == dict(other.items())

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def copy(self) -> PortParts:
        new = PortParts(self._templates, self._where)
        dict.update(new, dict.items(self))  # the raw values: nothing decoded
        return new

    def raw(self, port: str) -> str | None:
        """The part's JSON text while it is not decoded (None once it is)."""
        v = dict.__getitem__(self, port)
        return v.text() if isinstance(v, _Part) else None

    def _put(self, port: str, raw: _Part | None) -> None:
        if raw is None:
            dict.pop(self, port, None)
        else:
            dict.__setitem__(self, port, raw)  # type: ignore[misc]  # undecoded: see __getitem__

    def _usage(self, port: str) -> tuple[list[str], bool]:
        v = dict.__getitem__(self, port)
        if isinstance(v, _Part):
            return v.usage(self._templates)
        return [*v.chains, *v.sets], uses_ip_layer(v)


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
                head = f.read(96)  # {"version":2,"log":"<token>",...: no need to parse it all
        except FileNotFoundError:
            return None
        prefix = _HEAD.encode()
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
            lines.append(json.dumps({"port": port, "part": part}, separators=_SEPS))
        data = ("\n".join(lines) + "\n").encode()
        path = self._log(token)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        # Small beside the snapshot: a load reads every journal line (rewriting the snapshot
        # copies the undecoded parts' text, so it is cheap).
        if size + len(data) > max(1 << 15, self.snapshot.path.stat().st_size >> 4):
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
        from nwguard.state.files import atomic_write

        token = os.urandom(6).hex()
        ports, lazy = state.ports, isinstance(state.ports, PortParts)
        lines = []
        for port in ports:
            text = ports.raw(port) if lazy else None  # type: ignore[attr-defined]
            if text is None:
                text = json.dumps(PortFile.of(ports[port]).to_json(), separators=_SEPS)
            lines.append(json.dumps(port) + ":" + text)
        refs = json.dumps(dict(sorted(state.refs.items())), separators=_SEPS)
        head = f'{_HEAD}{token}","refs":{refs},"ip_ports":{state.ip_ports}{_PORTS}'
        data = "\n".join([head, ",\n".join(lines), "}}\n"] if lines else [head, "}}\n"])
        atomic_write(self.snapshot.path, data.encode(), durable=False)
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
            lazy = self._load_lazy(t) if t is not None else None
            if lazy is not None:
                return lazy
            snap = self.snapshot.read()
        except StateError:
            return None
        if t is None:
            return KernelState()
        if snap is None:
            return None
        files: dict[str, PortFile | None] = dict(snap.ports)
        for port, part in self._journal(snap.log).items():
            try:
                files[port] = None if part is None else PortFile.from_json(part)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        state = KernelState()
        for port, f in files.items():
            if f is None:
                continue
            try:
                contrib = f.contribution(t)
            except KeyError:
                # A writer killed between the port parts and templates.json: the kernel holds
                # one whole transaction, but this port's part does not match the templates.
                # Leave it out; nwguardd's start recompiles every bound port.
                continue
            state._add(port, contrib)
        return state

    def _load_lazy(self, t: Templates) -> KernelState | None:
        """The state with its ports undecoded (None: read it whole; that finds what is off).

        Needs a version 2 snapshot whose reference counts, with the journal's changes, name
        only chains and sets of the templates (a writer killed between the journal and the
        templates leaves them apart: the whole read then leaves out the ports concerned)."""
        try:
            text = self.snapshot.path.read_bytes().decode()
        except (FileNotFoundError, ValueError):
            return None
        lines = text.split("\n")
        head = lines[0]
        if not (head.startswith(_HEAD) and head.endswith(_PORTS) and lines[-2:] == ["}}", ""]):
            return None
        ports = PortParts(t, self.snapshot.path)
        try:
            header = json.loads(head[: -len(_PORTS)] + "}")
            refs: dict[str, int] = header["refs"]
            ip_ports = header["ip_ports"]  # missing (written before it): the whole read counts
            body = lines[1:-2]
            for i, line in enumerate(body):
                if line[:1] != '"':
                    return None
                name, end = scanstring(line, 1)
                last = i == len(body) - 1
                if line[end] != ":" or last == line.endswith(","):
                    return None
                ports._put(name, _Part(line[end + 1 : None if last else -1]))
            for port, part in self._journal(str(header["log"])).items():
                if port in ports:
                    names, ip = ports._usage(port)
                    for n in names:
                        refs[n] -= 1
                    ip_ports -= ip
                new = None if part is None else _Part(part)
                if new is not None:
                    names, ip = new.usage(t)
                    for n in names:
                        refs[n] = refs.get(n, 0) + 1
                    ip_ports += ip
                ports._put(port, new)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
        refs = {n: k for n, k in refs.items() if k}
        if any(type(k) is not int or k < 0 for k in refs.values()) or not refs.keys() <= (
            t.chains.keys() | t.sets.keys()
        ):
            return None
        if type(ip_ports) is not int or not 0 <= ip_ports <= len(ports):
            return None
        chains = {n: r for n, r in t.chains.items() if n in refs}
        sets = {n: k for n, k in t.sets.items() if n in refs}
        return KernelState(chains, sets, ports, refs, ip_ports)

    def _journal(self, token: str) -> dict[str, dict[str, Any] | None]:
        """The journal's parts in order, the last per port (a torn or bad line is skipped)."""
        try:
            data = self._log(token).read_bytes()
        except FileNotFoundError:
            return {}
        out: dict[str, dict[str, Any] | None] = {}
        for line in data.splitlines():
            try:
                entry = json.loads(line)
                part = entry["part"]
                if part is not None:
                    PortFile.from_json(part)  # a line that does not decode is skipped
                out[str(entry["port"])] = part
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a writer killed mid-line; nwguardd's start recompiles every port
        return out
