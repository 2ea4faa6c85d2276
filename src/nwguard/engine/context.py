"""What every service of one client shares: the paths, the lock, objects built on first use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nwguard.state.files import locked
from nwguard.state.paths import Paths

if TYPE_CHECKING:
    from nwguard.backends import Executor
    from nwguard.backends.choice import BackendChoice
    from nwguard.engine.learning import RequestSink
    from nwguard.engine.networks import HostNetworking
    from nwguard.engine.ports import Engine
    from nwguard.state.filters import FilterStore


class Context:
    """Shared state of one client: where things live, the lock, and the objects built on demand.

    The engine, the filter store and the network host are created on first use (a filter
    command never imports the binding engine or the networking modules); tests pass a
    recording ``network_host``. The firewall backend (``backend()``) is chosen on first use
    from ``nwguard.conf`` and the environment (:mod:`nwguard.backends.choice`); ``backend``
    fixes it instead. ``on_learning`` receives the engine's learning requests
    (nwguardd serves them in memory; by default they are recorded for a daemon to find).
    """

    def __init__(
        self,
        paths: Paths,
        dry_run: bool = False,
        *,
        network_host: HostNetworking | None = None,
        on_learning: RequestSink | None = None,
        backend: BackendChoice | None = None,
    ) -> None:
        self.paths = paths
        self.dry_run = dry_run
        self.on_learning = on_learning
        self._engine: Engine | None = None
        self._filter_store: FilterStore | None = None
        self._network_host = network_host
        self._backend = backend
        self._held: str | None = None
        self._tlock = threading.RLock()

    def engine(self) -> Engine:
        """The binding engine (call with the lock held for changes)."""
        if self._engine is None:
            from nwguard.engine.ports import Engine

            executor = self.executor()
            engine = Engine(
                self.paths, executor=executor, dry_run=self.dry_run, on_learning=self.on_learning
            )
            if hasattr(executor, "base"):  # iptables: diffs start from the committed state
                from nwguard.compile.kernel_state import full

                executor.base = lambda: full(engine.applied())
            self._engine = engine
        return self._engine

    def backend(self) -> BackendChoice:
        """The firewall backend in force (HostError when its tools are missing)."""
        if self._backend is None:
            from nwguard.backends.choice import choose
            from nwguard.state.config import firewall_setting

            self._backend = choose(firewall_setting(self.paths.config_dir))
        return self._backend

    def use_backend(self, choice: BackendChoice) -> None:
        """From now on use ``choice`` (after a backend switch): a new engine and executor."""
        self._backend = choice
        self.drop_engine()

    def executor(self) -> Executor:
        """A fresh executor of the backend (each engine has its own: it mirrors the kernel)."""
        from nwguard.backends.choice import make_executor

        return make_executor(self.backend())

    def drop_engine(self) -> None:
        """Forget the engine (and its state in memory): another process saved the state."""
        self._engine = None

    def filter_store(self) -> FilterStore:
        """The filters of the configuration directory."""
        if self._filter_store is None:
            from nwguard.state.filters import FilterStore

            self._filter_store = FilterStore(self.paths.nwfilter_dir)
        return self._filter_store

    def network_host(self) -> HostNetworking:
        """The host side of virtual networks: netlink, sysctls, dnsmasq, nftables."""
        if self._network_host is None:
            from nwguard.engine.networks import HostNetworking

            self._network_host = HostNetworking()
        return self._network_host

    @property
    def held(self) -> str | None:
        """``None``, ``"shared"`` or ``"exclusive"``: how this context holds the lock now."""
        return self._held

    @contextlib.contextmanager
    def lock(self, shared: bool = False) -> Iterator[None]:
        """Serialise changes between nwguard processes (and the daemon).

        Re-entrant within one thread: a nested ``lock()`` (a hook that calls back into the
        client while a change holds the lock) is a no-op instead of a self-deadlock on
        ``flock``. Asking for the exclusive lock while holding the shared one is a bug and
        raises RuntimeError. Other threads of this process wait as other processes do.
        """
        with self._tlock:
            if self._held is not None:
                if self._held == "shared" and not shared:
                    raise RuntimeError("exclusive lock requested while holding the shared lock")
                yield
                return
            with locked(self.paths.lock_file, shared=shared):
                self._held = "shared" if shared else "exclusive"
                try:
                    yield
                finally:
                    self._held = None
