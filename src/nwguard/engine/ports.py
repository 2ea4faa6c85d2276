"""The binding engine: bindings on disk, the kernel state they need, one transaction per change.

State directory layout::

    nwfilter-binding/<portdev>.xml   the bindings (libvirt's filterbinding XML)
    applied/templates.json           the shared chains and sets last committed to the kernel
    applied/ports/<portdev>.json     each port's part of it: set elements, dispatch entries

Every change computes the new :class:`KernelState`, sends the difference as one nftables
transaction, and only then writes the files. If the incremental batch is refused (someone
flushed our tables) the whole state is re-applied atomically instead.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nwguard.engine import learning
from nwguard.compile.program import Contribution, PortCompiler
from nwguard.compile.kernel_state import KernelState, diff, full
from nwguard.errors import ApplyError, ConflictError, InUseError, NotFoundError, ResolveError
from nwguard.state.files import atomic_write, remove_file
from nwguard.state.learned import LearnedStore
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import Filter
from nwguard.state.paths import Paths
from nwguard.resolve.resolver import UnresolvedError, references
from nwguard.xmlio.binding_xml import parse_binding, write_binding

Executor = Callable[[dict[str, Any]], None]
GENERATION = "generation"


def kernel_executor(batch_json: dict[str, Any]) -> None:
    from nwguard.backends.nft.executor import apply

    apply(batch_json)


@dataclass
class ChangeResult:
    """What a change did: the batch sent (or that would be sent with dry_run)."""

    batch: dict[str, Any]
    applied: bool


class Engine:
    """Bindings → kernel. Callers hold the nwguard lock around every change."""

    def __init__(self, paths: Paths, executor: Executor | None = None, dry_run: bool = False) -> None:
        self.paths = paths
        self.executor = executor or kernel_executor
        self.dry_run = dry_run
        self._applied: KernelState | None = None
        self._compiler: PortCompiler | None = None
        self._parsed: dict[str, tuple[tuple[int, int, int], FilterBinding]] = {}

    # ------------------------------------------------------------------------- persistence

    @property
    def applied_dir(self) -> Path:
        return self.paths.state_dir / "applied"

    def bindings(self) -> dict[str, FilterBinding]:
        """Every binding by port (files are re-parsed only when they change)."""
        out = {}
        d = self.paths.binding_dir
        if d.is_dir():
            for f in sorted(d.glob("*.xml")):
                b = self._read_binding(f)
                if b is not None:
                    out[b.portdev] = b
        return out

    def _read_binding(self, f: Path) -> FilterBinding | None:
        try:
            st = f.stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._parsed.get(f.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        b = parse_binding(f.read_bytes(), str(f))
        self._parsed[f.name] = (key, b)
        return b

    def binding(self, portdev: str) -> FilterBinding:
        f = self.paths.binding_dir / f"{portdev}.xml"
        if not f.is_file():
            raise NotFoundError(f"no filter binding for port '{portdev}'")
        return parse_binding(f.read_bytes(), str(f))

    def applied(self) -> KernelState:
        if self._applied is None:
            self._applied = load_state(self.applied_dir)
        return self._applied

    def _commit(
        self, new: KernelState, batch: dict[str, Any], full_state: bool = False,
        ports: set[str] | None = None,
    ) -> ChangeResult:
        if not full_state and not batch.get("nftables"):
            return ChangeResult(batch, False)  # nothing to change: the kernel is not touched
        if not full_state and not (self.applied_dir / "templates.json").is_file():
            # Nothing applied yet: the tables may not exist, so the first change sends the
            # whole state (and a dry run shows that batch, not a diff the kernel refuses).
            batch = full(new).to_json()
            full_state = True
        if self.dry_run:
            return ChangeResult(batch, False)
        ensure_bridge_netfilter()
        try:
            self.executor(batch)
        except ApplyError:
            if full_state:
                raise
            batch = full(new).to_json()  # the kernel no longer matches applied.json
            self.executor(batch)
        old = self._applied
        changed = old is None or old.chains.keys() != new.chains.keys() or old.sets.keys() != new.sets.keys()
        save_state(self.applied_dir, new, ports, templates_changed=changed)
        self._applied = new
        return ChangeResult(batch, True)

    # ------------------------------------------------------------------------- compiling

    def compile(self, b: FilterBinding, filters: Mapping[str, Filter]) -> Contribution:
        """The kernel contribution of one binding (ResolveError if it cannot be instantiated).

        IP learning (:mod:`learning_filters`): learned addresses are the port's ``IP``; a
        port whose only missing variable is ``IP`` gets the interim learning rules.
        """
        try:
            try:
                params = learning.params(b, self.paths)
                return self.compiler(filters).compile(b.portdev, b.filterref.filter, params)
            except UnresolvedError as exc:
                return learning.interim(b, exc, self.paths, dry_run=self.dry_run)
        except ResolveError as exc:
            raise ResolveError(f"port {b.portdev}: {exc}") from None

    def compiler(self, filters: Mapping[str, Filter]) -> PortCompiler:
        """A compiler for ``filters``, kept while the filters stay the same."""
        if self._compiler is None or self._compiler.filters != filters:
            self._compiler = PortCompiler(filters)
        return self._compiler

    # ------------------------------------------------------------------------- changes

    def bind(self, b: FilterBinding, filters: Mapping[str, Filter]) -> ChangeResult:
        """Create a binding: the port exists, is not bound yet, and its rules are in force."""
        if (self.paths.binding_dir / f"{b.portdev}.xml").exists():
            raise ConflictError(f"port '{b.portdev}' already has a filter binding")
        if not self.dry_run and not port_exists(b.portdev):
            raise NotFoundError(f"port '{b.portdev}' does not exist")
        if b.filterref.filter not in filters:
            raise NotFoundError(f"filter '{b.filterref.filter}' does not exist")
        contrib = self.compile(b, filters)
        old = self.applied()
        new = old.with_port(b.portdev, contrib)
        result = self._commit(new, diff(old, new, {b.portdev}).to_json(), ports={b.portdev})
        if result.applied:
            f = self.paths.binding_dir / f"{b.portdev}.xml"
            atomic_write(f, write_binding(b), durable=False)
            st = f.stat()
            self._parsed[f.name] = ((st.st_ino, st.st_mtime_ns, st.st_size), b)  # no re-parse
        return result

    def unbind(self, portdev: str) -> ChangeResult:
        """Delete a binding and every trace of it in the kernel."""
        self.binding(portdev)  # NotFoundError if absent
        old = self.applied()
        new = old.with_port(portdev, None)
        result = self._commit(new, diff(old, new, {portdev}).to_json(), ports={portdev})
        if result.applied:
            remove_file(self.paths.binding_dir / f"{portdev}.xml")
            LearnedStore(self.paths).forget(portdev)
        return result

    def refresh(
        self, ports: set[str], filters: Mapping[str, Filter], full_state: bool = False
    ) -> tuple[ChangeResult, dict[str, str]]:
        """Recompile ``ports`` (learned addresses changed, daemon start) in one transaction.

        A port without a binding file leaves the kernel state; one that cannot be compiled
        keeps its current rules and is returned with the reason (``{port: message}``).
        ``full_state``: replace nwguard's tables with the result (and rewrite all state files)
        instead of sending the difference: the daemon's start, when the kernel or the files
        may not match what was last saved.
        """
        old = self.applied()
        new, skipped = old, {}
        for port in sorted(ports):
            try:
                b = self.binding(port)
            except NotFoundError:
                new = new.with_port(port, None)
                continue
            try:
                new = new.with_port(port, self.compile(b, filters))
            except ResolveError as exc:
                skipped[port] = str(exc)
        if full_state:
            return self._commit(new, full(new).to_json(), full_state=True), skipped
        return self._commit(new, diff(old, new, ports).to_json(), ports=ports), skipped

    def rebuild(self, filters: Mapping[str, Filter], changed: set[str] | None = None) -> ChangeResult:
        """Recompile bound ports against ``filters`` and apply all of it in one transaction.

        ``changed``: names of the filters that changed; only ports whose filter tree contains
        one are recompiled. A port that cannot be instantiated any more aborts everything.
        """
        old = self.applied()
        ports = dict(old.ports)
        touched = set()
        for port, b in self.bindings().items():
            if changed is not None and port in ports and not (references(filters, b.filterref.filter) & changed):
                continue
            if b.filterref.filter not in filters:
                raise InUseError(f"filter '{b.filterref.filter}' is in use by port '{port}'")
            try:
                ports[port] = self.compile(b, filters)
            except ResolveError as exc:
                raise InUseError(f"the change breaks a bound port: {exc}") from None
            touched.add(port)
        new = old
        for port in touched:
            new = new.with_port(port, ports[port])
        return self._commit(new, diff(old, new, touched).to_json(), ports=touched)

    def reapply(self) -> ChangeResult:
        """Re-send the whole state atomically (after a flush, on SIGHUP, at start)."""
        state = self.applied()
        return self._commit(state, full(state).to_json(), full_state=True)


# ----------------------------------------------------------------------------- helpers


def port_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def ensure_bridge_netfilter() -> None:
    """Bridged IP must pass the IP hooks for connection state (per network namespace)."""
    for fam in ("iptables", "ip6tables"):
        p = Path(f"/proc/sys/net/bridge/bridge-nf-call-{fam}")
        try:
            if p.read_text().strip() != "1":
                p.write_text("1\n")
        except OSError:
            pass  # no bridge netfilter here: stateful rules will not match, stateless ones do


def save_state(
    directory: Path, state: KernelState, ports: set[str] | None = None, templates_changed: bool = True
) -> None:
    """Persist the contributions of ``ports`` (default: all) and, if changed, the templates.

    Runtime state: no fsync (a host crash empties /run anyway; a killed process does not
    lose written pages). Each file is replaced atomically; reference counts are not stored
    but recounted on load.
    """
    port_dir = directory / "ports"
    port_dir.mkdir(parents=True, exist_ok=True)
    if ports is None:  # the whole state: no file of a port outside it may stay
        for f in port_dir.glob("*.json"):
            if f.stem not in state.ports:
                remove_file(f)
    for port in state.ports.keys() if ports is None else ports:
        c = state.ports.get(port)
        if c is None:
            remove_file(port_dir / f"{port}.json")
        else:
            atomic_write(port_dir / f"{port}.json", json.dumps(c.to_json()), durable=False)
    if templates_changed or not (directory / "templates.json").exists():
        templates = {"version": 2, "chains": state.chains, "sets": state.sets}
        atomic_write(directory / "templates.json", json.dumps(templates, separators=(",", ":")), durable=False)
    # A new token per save: a long-lived process (nwguardd) keeps its loaded state while the
    # token is the one it wrote, and reloads after anyone else's change.
    atomic_write(directory / GENERATION, f"{os.getpid()} {time.time_ns()} {os.urandom(6).hex()}\n", durable=False)


def generation(directory: Path) -> str | None:
    """The token :func:`save_state` wrote last (None before the first save)."""
    try:
        return (directory / GENERATION).read_text()
    except FileNotFoundError:
        return None


def load_state(directory: Path) -> KernelState:
    """Read what :func:`save_state` wrote (an empty state if nothing was)."""
    tfile = directory / "templates.json"
    if not tfile.is_file():
        return KernelState()
    t = json.loads(tfile.read_bytes())
    state = KernelState()
    for f in (directory / "ports").glob("*.json"):
        try:
            c = json.loads(f.read_bytes())
            contrib = Contribution(
                chains={n: t["chains"][n] for n in c["chains"]},
                sets={n: t["sets"][n] for n in c["sets"]},
                elements=c["elements"],
                dispatch=c["dispatch"],
                fallback_rules=c.get("fallback_rules", 0),
            )
        except (OSError, ValueError, KeyError):
            # A writer killed between the port files and templates.json: the kernel holds one
            # whole transaction, but this port's file does not match the templates. Leave it
            # out; nwguardd's start recompiles every bound port and replaces the tables.
            continue
        state._add(f.stem, contrib)
    return state
