"""The binding engine: bindings on disk, the kernel state they need, one transaction per change.

State directory layout::

    nwfilter-binding/<portdev>.xml   the bindings (libvirt's filterbinding XML)
    applied.json                     what nwguard last committed to the kernel

Every change computes the new :class:`KernelState`, sends the difference as one nftables
transaction, and only then writes the files. If the incremental batch is refused (someone
flushed our tables) the whole state is re-applied atomically instead.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compile.program import Contribution, PortCompiler
from .compile.state import KernelState, diff, full
from .errors import ApplyError, ConflictError, InUseError, NotFoundError, ResolveError
from .fsutil import atomic_write, remove_file
from .model.binding import FilterBinding
from .model.filter import Filter
from .paths import Paths
from .resolve import references
from .xmlio.binding_xml import parse_binding, write_binding

Executor = Callable[[dict[str, Any]], None]


def kernel_executor(batch_json: dict[str, Any]) -> None:
    from .backends.nft_exec import apply

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

    # ------------------------------------------------------------------------- persistence

    @property
    def applied_file(self) -> Path:
        return self.paths.state_dir / "applied.json"

    def bindings(self) -> dict[str, FilterBinding]:
        out = {}
        d = self.paths.binding_dir
        if d.is_dir():
            for f in sorted(d.glob("*.xml")):
                b = parse_binding(f.read_bytes(), str(f))
                out[b.portdev] = b
        return out

    def binding(self, portdev: str) -> FilterBinding:
        f = self.paths.binding_dir / f"{portdev}.xml"
        if not f.is_file():
            raise NotFoundError(f"no filter binding for port '{portdev}'")
        return parse_binding(f.read_bytes(), str(f))

    def applied(self) -> KernelState:
        if self._applied is None:
            self._applied = load_state(self.applied_file)
        return self._applied

    def _commit(self, new: KernelState, batch: dict[str, Any], full_state: bool = False) -> ChangeResult:
        if self.dry_run:
            return ChangeResult(batch, False)
        if any("l4o" in c.dispatch or "l4i" in c.dispatch for c in new.ports.values()):
            ensure_bridge_netfilter()
        try:
            self.executor(batch)
        except ApplyError:
            if full_state:
                raise
            batch = full(new).to_json()  # the kernel no longer matches applied.json
            self.executor(batch)
        save_state(self.applied_file, new)
        self._applied = new
        return ChangeResult(batch, True)

    # ------------------------------------------------------------------------- compiling

    def compile(self, b: FilterBinding, filters: Mapping[str, Filter]) -> Contribution:
        """The kernel contribution of one binding (ResolveError if it cannot be instantiated)."""
        try:
            return self.compiler(filters).compile(b.portdev, b.filterref.filter, b.params())
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
        if not port_exists(b.portdev):
            raise NotFoundError(f"port '{b.portdev}' does not exist")
        if b.filterref.filter not in filters:
            raise NotFoundError(f"filter '{b.filterref.filter}' does not exist")
        contrib = self.compile(b, filters)
        old = self.applied()
        new = old.with_port(b.portdev, contrib)
        result = self._commit(new, diff(old, new, {b.portdev}).to_json())
        if result.applied:
            atomic_write(self.paths.binding_dir / f"{b.portdev}.xml", write_binding(b))
        return result

    def unbind(self, portdev: str) -> ChangeResult:
        """Delete a binding and every trace of it in the kernel."""
        self.binding(portdev)  # NotFoundError if absent
        old = self.applied()
        new = old.with_port(portdev, None)
        result = self._commit(new, diff(old, new, {portdev}).to_json())
        if result.applied:
            remove_file(self.paths.binding_dir / f"{portdev}.xml")
        return result

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
        new = KernelState.from_ports(ports, {**old.chains}, {**old.sets})
        return self._commit(new, diff(old, new, touched).to_json())

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


def save_state(path: Path, state: KernelState) -> None:
    data = {
        "version": 1,
        "chains": state.chains,
        "sets": state.sets,
        "ports": {p: c.to_json() for p, c in state.ports.items()},
    }
    atomic_write(path, json.dumps(data, separators=(",", ":")))


def load_state(path: Path) -> KernelState:
    if not path.is_file():
        return KernelState()
    data = json.loads(path.read_bytes())
    chains, sets = data["chains"], data["sets"]
    ports = {}
    for port, c in data["ports"].items():
        ports[port] = Contribution(
            chains={n: chains[n] for n in c["chains"]},
            sets={n: sets[n] for n in c["sets"]},
            elements=c["elements"],
            dispatch=c["dispatch"],
            fallback_rules=c.get("fallback_rules", 0),
        )
    return KernelState(chains, sets, ports)


def owner_of(state: KernelState) -> int:  # pragma: no cover - debugging aid
    return os.getpid()
