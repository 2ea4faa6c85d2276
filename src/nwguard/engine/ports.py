"""The binding engine: bindings on disk, the kernel state they need, one transaction per change.

State directory layout::

    nwfilter-binding/<portdev>.xml   the bindings (libvirt's filterbinding XML)
    applied/                         what was last committed (:mod:`nwguard.state.applied`)

Every change computes the new :class:`KernelState`, hands the difference to the executor as
one transaction, and only then writes the files. If the incremental batch is refused (someone
flushed our tables) the whole state is re-applied atomically instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from nwguard.compile.kernel_state import (
    L4_ROLES,
    KernelState,
    chain_needs_ip_hooks,
    diff,
    full,
)
from nwguard.engine.results import Change
from nwguard.errors import ApplyError, ConflictError, InUseError, NotFoundError, ResolveError
from nwguard.ir.ports import Contribution, PortBatch
from nwguard.state.applied import AppliedState
from nwguard.state.files import atomic_write, remove_file
from nwguard.state.paths import Paths

# The compiler, the learning rules and the binding XML parser (lxml) are imported where used:
# a delete needs none of them, and start-up is measured (README, issue 13).
if TYPE_CHECKING:
    from nwguard.backends import Executor
    from nwguard.compile.learning import LearningRequest
    from nwguard.compile.program import PortCompiler
    from nwguard.engine.learning import RequestSink
    from nwguard.model.binding import FilterBinding
    from nwguard.model.filter import Filter


class PortHost(Protocol):
    """What the engine needs of the host (``nwguard.host.netfilter.KernelPortHost``)."""

    def port_exists(self, name: str) -> bool: ...

    def ensure_bridge_netfilter(
        self, hooked: Collection[str] = (), released: Collection[str] = ()
    ) -> None: ...


def _kernel_executor() -> Executor:
    from nwguard.backends.nft.executor import NftExecutor

    return NftExecutor()


def _kernel_host() -> PortHost:
    from nwguard.host.netfilter import KernelPortHost

    return KernelPortHost()


class Engine:
    """Bindings → kernel. Callers hold the nwguard lock around every change.

    Its effects come in through small interfaces: ``executor`` applies batches (nftables
    unless given), ``host`` answers whether a port exists and turns the IP hooks on for the
    bridges of the ports whose filters need them (``kernel_state.needs_ip_hooks``),
    ``learned`` gives a binding's learned addresses and ``on_learning`` receives the
    learning requests of committed changes (by default both go through the learned-address
    store; nwguardd serves requests in memory).
    """

    def __init__(
        self,
        paths: Paths,
        executor: Executor | None = None,
        dry_run: bool = False,
        host: PortHost | None = None,
        learned: Callable[[FilterBinding], tuple[str, ...]] | None = None,
        on_learning: RequestSink | None = None,
    ) -> None:
        self.paths = paths
        self.executor = executor or _kernel_executor()
        self.dry_run = dry_run
        self.host = host or _kernel_host()
        self.learned = learned or (lambda b: _learned_addresses(b, paths))
        self.on_learning = on_learning or _stored_requests(paths)
        self._applied: KernelState | None = None
        self._compiler: PortCompiler | None = None
        self._parsed: dict[str, tuple[tuple[int, int, int], FilterBinding]] = {}
        self._requests: dict[str, LearningRequest] = {}  # compiled, not committed yet

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
        from nwguard.xmlio.binding_xml import parse_binding  # expat for a plain file

        b = parse_binding(f.read_bytes(), str(f))
        self._parsed[f.name] = (key, b)
        return b

    def binding(self, portdev: str) -> FilterBinding:
        f = self.paths.binding_dir / f"{portdev}.xml"
        b = self._read_binding(f) if f.is_file() else None  # parsed once while unchanged
        if b is None:
            raise NotFoundError(f"no filter binding for port '{portdev}'")
        return b

    def applied(self) -> KernelState:
        if self._applied is None:
            loaded = load_state(self.applied_dir)
            self._applied = loaded if loaded is not None else self._recompiled_state()
        return self._applied

    def _recompiled_state(self) -> KernelState:
        """The state of every bound port compiled anew: what was saved is of an older
        version. It is marked unsaved, so the next change replaces the tables whole."""
        from nwguard.state.filters import FilterStore

        filters = FilterStore(self.paths.nwfilter_dir).preview()
        state = KernelState()
        for port, b in self.bindings().items():
            try:
                state = state.with_port(port, self.compile(b, filters))
            except ResolveError:
                continue  # nwguardd's start reports it; the port keeps what the kernel has
        AppliedState(self.applied_dir).forget()
        return state

    def _commit(
        self,
        new: KernelState,
        batch: PortBatch,
        full_state: bool = False,
        ports: set[str] | None = None,
    ) -> Change:
        requests = {p: r for p, r in self._requests.items() if ports is None or p in ports}
        self._requests.clear()
        if not full_state and not batch:
            return Change(batch, False)  # nothing to change: the kernel is not touched
        if not full_state and not AppliedState(self.applied_dir).exists():
            # Nothing applied yet: the tables may not exist, so the first change sends the
            # whole state (and a dry run shows that batch, not a diff the kernel refuses).
            batch = full(new)
            full_state = True
        if self.dry_run:
            return Change(batch, False)
        old = self._applied
        hooked = self.hooked(new)
        self.host.ensure_bridge_netfilter(hooked)  # on before the rules that need them
        try:
            self.executor.apply(batch)
        except ApplyError:
            if full_state:
                raise
            batch = full(new)  # the kernel no longer matches the applied state
            self.executor.apply(batch)
        released = self.hooked(old) - hooked if old is not None else set()
        if released:
            self.host.ensure_bridge_netfilter(hooked, released)
        changed = (
            old is None
            or old.chains.keys() != new.chains.keys()
            or old.sets.keys() != new.sets.keys()
        )
        save_state(self.applied_dir, new, None if full_state else ports, templates_changed=changed)
        self._applied = new
        for req in requests.values():
            if req.port in new.ports:
                self.on_learning(req)
        return Change(batch, True)

    def hooked(self, state: KernelState) -> set[str]:
        """The ports of ``state`` whose filters need the IP hooks (conntrack, reject; on a
        backend whose IP-layer rules live in the IP hooks, any IP-layer rule)."""
        if not getattr(self.executor, "ip_rules_need_ip_hooks", False) and not any(
            chain_needs_ip_hooks(n, rules) for n, rules in state.chains.items()
        ):
            return set()  # no chain needs them: no port's part is read (a loaded state decodes)
        return {p for p, c in state.ports.items() if self._needs_hooks(c)}

    def _needs_hooks(self, c: Contribution) -> bool:
        if getattr(self.executor, "ip_rules_need_ip_hooks", False) and c.dispatch.keys() & L4_ROLES:
            return True
        return any(chain_needs_ip_hooks(name, rules) for name, rules in c.chains.items())

    def ensure_ip_hooks(self) -> None:
        """Turn the IP hooks on where the applied state needs them (nwguardd's checks)."""
        self.host.ensure_bridge_netfilter(self.hooked(self.applied()))

    # ------------------------------------------------------------------------- compiling

    def compile(self, b: FilterBinding, filters: Mapping[str, Filter]) -> Contribution:
        """The kernel contribution of one binding (ResolveError if it cannot be instantiated).

        IP learning (:mod:`nwguard.compile.learning`): learned addresses are the port's
        ``IP``; a port whose only missing variable is ``IP`` gets the interim learning rules,
        and its learning request goes out when the change is committed.
        """
        from nwguard.compile import learning as learning_rules
        from nwguard.resolve.resolver import UnresolvedError

        self._requests.pop(b.portdev, None)
        try:
            try:
                params = learning_rules.params(b, self.learned(b))
                return self.compiler(filters).compile(b.portdev, b.filterref.filter, params)
            except UnresolvedError as exc:
                contrib, request = learning_rules.interim(b, exc)
                self._requests[b.portdev] = request
                return contrib
        except ResolveError as exc:
            if exc.message.startswith(f"port {b.portdev}: "):  # the compiler named it
                raise
            raise ResolveError(f"port {b.portdev}: {exc}") from None

    def compiler(self, filters: Mapping[str, Filter]) -> PortCompiler:
        """A compiler for ``filters``, kept while the filters stay the same."""
        from nwguard.compile.program import PortCompiler

        if self._compiler is None or (
            self._compiler.filters is not filters and self._compiler.filters != filters
        ):
            self._compiler = PortCompiler(filters)
        return self._compiler

    # ------------------------------------------------------------------------- changes

    def bind(self, b: FilterBinding, filters: Mapping[str, Filter]) -> Change:
        """Create a binding: the port exists, is not bound yet, and its rules are in force."""
        self._check_new(b, filters)
        contrib = self.compile(b, filters)
        old = self.applied()
        new = old.with_port(b.portdev, contrib)
        result = self._commit(new, diff(old, new, {b.portdev}), ports={b.portdev})
        if self._done(result):
            self._write_binding(b)
        return result

    def _check_new(self, b: FilterBinding, filters: Mapping[str, Filter]) -> None:
        """A new binding's port exists and is not bound yet, and its filter exists."""
        if (self.paths.binding_dir / f"{b.portdev}.xml").exists():
            raise ConflictError(f"port '{b.portdev}' already has a filter binding")
        if not self.dry_run and not self.host.port_exists(b.portdev):
            raise NotFoundError(f"port '{b.portdev}' does not exist")
        if b.filterref.filter not in filters:
            raise NotFoundError(f"filter '{b.filterref.filter}' does not exist")

    def _write_binding(self, b: FilterBinding) -> None:
        """The binding's file, and its parse kept (the next read does not parse it again)."""
        from nwguard.xmlio.binding_xml import write_binding

        f = self.paths.binding_dir / f"{b.portdev}.xml"
        atomic_write(f, write_binding(b), durable=False)
        st = f.stat()
        self._parsed[f.name] = ((st.st_ino, st.st_mtime_ns, st.st_size), b)

    def _done(self, result: Change) -> bool:
        """Whether a binding change took effect: applied, or with nothing for the kernel (a
        filter without rules) outside a dry run; its file is then written or removed."""
        return result.applied or (not result.batch and not self.dry_run)

    def bind_many(self, bs: Sequence[FilterBinding], filters: Mapping[str, Filter]) -> Change:
        """Create many bindings in one transaction: every port gets its rules, or none does.

        Every binding is checked and compiled before anything is sent; a refused batch
        leaves the kernel and the files as they were.
        """
        seen: set[str] = set()
        for b in bs:
            if b.portdev in seen:
                raise ConflictError(f"port '{b.portdev}' is given twice")
            seen.add(b.portdev)
            self._check_new(b, filters)
        self.compiler(filters)  # once: compile() then finds the same map
        try:
            contribs = {b.portdev: self.compile(b, filters) for b in bs}
        except ResolveError:
            for port in seen:
                self._requests.pop(port, None)
            raise
        old = self.applied()
        new = old.with_ports(contribs)
        result = self._commit(new, diff(old, new, seen), ports=seen)
        if self._done(result):
            for b in bs:
                self._write_binding(b)
        return result

    def unbind_many(self, portdevs: Iterable[str]) -> Change:
        """Delete many bindings in one transaction (all exist, or nothing is done)."""
        ports = list(dict.fromkeys(portdevs))
        for port in ports:
            if not (self.paths.binding_dir / f"{port}.xml").is_file():
                raise NotFoundError(f"no filter binding for port '{port}'")
        old = self.applied()
        new = old.with_ports(dict.fromkeys(ports))
        result = self._commit(new, diff(old, new, set(ports)), ports=set(ports))
        if self._done(result):
            from nwguard.state.learned import LearnedStore

            learned = LearnedStore(self.paths)
            for port in ports:
                remove_file(self.paths.binding_dir / f"{port}.xml")
                learned.forget(port)
        return result

    def unbind(self, portdev: str) -> Change:
        """Delete a binding and every trace of it in the kernel."""
        if not (self.paths.binding_dir / f"{portdev}.xml").is_file():
            raise NotFoundError(f"no filter binding for port '{portdev}'")  # as binding() says
        old = self.applied()
        new = old.with_port(portdev, None)
        result = self._commit(new, diff(old, new, {portdev}), ports={portdev})
        if self._done(result):
            from nwguard.state.learned import LearnedStore

            remove_file(self.paths.binding_dir / f"{portdev}.xml")
            LearnedStore(self.paths).forget(portdev)
        return result

    def refresh(
        self, ports: set[str], filters: Mapping[str, Filter], full_state: bool = False
    ) -> tuple[Change, dict[str, str]]:
        """Recompile ``ports`` (learned addresses changed, daemon start) in one transaction.

        A port without a binding file leaves the kernel state; one that cannot be compiled
        keeps its current rules and is returned with the reason (``{port: message}``).
        ``full_state``: replace nwguard's tables with the result (and rewrite all state files)
        instead of sending the difference: the daemon's start, when the kernel or the files
        may not match what was last saved.
        """
        old = self.applied()
        changes: dict[str, Contribution | None] = {}
        skipped = {}
        for port in sorted(ports):
            try:
                b = self.binding(port)
            except NotFoundError:
                changes[port] = None
                continue
            try:
                changes[port] = self.compile(b, filters)
            except ResolveError as exc:
                skipped[port] = str(exc)
        new = old.with_ports(changes)  # one copy of the state, not one per port
        if full_state:
            return self._commit(new, full(new), full_state=True), skipped
        return self._commit(new, diff(old, new, ports), ports=ports), skipped

    def rebuild(self, filters: Mapping[str, Filter], changed: set[str] | None = None) -> Change:
        """Recompile bound ports against ``filters`` and apply all of it in one transaction.

        ``changed``: names of the filters that changed; only ports whose filter tree contains
        one are recompiled. A port that cannot be instantiated any more aborts everything.
        """
        from nwguard.resolve.resolver import references

        old = self.applied()
        ports = dict(old.ports)
        touched = set()
        for port, b in self.bindings().items():
            if (
                changed is not None
                and port in ports
                and not (references(filters, b.filterref.filter) & changed)
            ):
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
        return self._commit(new, diff(old, new, touched), ports=touched)

    def reapply(self) -> Change:
        """Re-send the whole state atomically (after a flush, on SIGHUP, at start)."""
        state = self.applied()
        return self._commit(state, full(state), full_state=True)


# ----------------------------------------------------------------------------- helpers


def _learned_addresses(b: FilterBinding, paths: Paths) -> tuple[str, ...]:
    from nwguard.engine.learning import learned_addresses

    return learned_addresses(b, paths)


def _stored_requests(paths: Paths) -> RequestSink:
    """:func:`nwguard.engine.learning.store_requests`, imported when a request comes."""

    def record(req: LearningRequest) -> None:
        from nwguard.engine.learning import store_requests

        store_requests(paths)(req)

    return record


def save_state(
    directory: Path,
    state: KernelState,
    ports: set[str] | None = None,
    templates_changed: bool = True,
) -> None:
    """Persist the contributions of ``ports`` (default: all) and, if changed, the templates."""
    AppliedState(directory).save(state, ports, templates_changed)


def generation(directory: Path) -> str | None:
    """The token :func:`save_state` wrote last (None before the first save)."""
    return AppliedState(directory).generation()


def load_state(directory: Path) -> KernelState | None:
    """What :func:`save_state` wrote (None: unusable, recompile the bound ports)."""
    return AppliedState(directory).load()
