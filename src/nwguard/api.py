"""The Python API: one client object with every operation the CLI offers.

The CLI is a thin layer over :class:`Client`. Each feature area lives in its own mixin module
(``ops_nwfilter``, ``ops_binding``, ``ops_network``, ``ops_iface``) and works on the shared
:class:`Context`: the paths, the lock, and the lazily created engine/backends.

>>> from nwguard.api import Client
>>> c = Client.open(config_dir="/tmp/nwg-doc/etc", state_dir="/tmp/nwg-doc/run")
>>> "clean-traffic" in [f.name for f in c.nwfilter_list()]
True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .fsutil import locked
from .paths import Paths


@dataclass
class Context:
    """Shared state of one client: where things live and the objects built on demand."""

    paths: Paths
    dry_run: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    _held: str | None = field(default=None, init=False, repr=False, compare=False)
    _tlock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )

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


# Feature areas loaded on first use: a filter or binding command never pays for the
# networking modules (bridges, dnsmasq, network XML), and vice versa.
_LAZY_MIXINS = (("ops_network", "NetworkOps"), ("ops_iface", "InterfaceOps"))


def _lazy_attr(obj: object, name: str) -> Any:
    import importlib

    for mod, cls_name in _LAZY_MIXINS:
        cls = getattr(importlib.import_module(f"nwguard.{mod}"), cls_name)
        member = getattr(cls, name, None)
        if member is not None:
            return member.__get__(obj, type(obj)) if hasattr(member, "__get__") else member
    raise AttributeError(name)


class _ClientBase:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _lazy_attr(self, name)

    @classmethod
    def open(
        cls,
        config_dir: str | None = None,
        state_dir: str | None = None,
        dry_run: bool = False,
    ) -> Client:
        """Open a client on a configuration and a state directory (defaults: see Paths)."""
        return Client(Context(Paths.from_env(config_dir, state_dir), dry_run=dry_run))


from .ops_binding import BindingOps
from .ops_nwfilter import FilterOps


class Client(FilterOps, BindingOps, _ClientBase):
    """Every nwguard operation: ``nwfilter_*`` and ``nwfilter_binding_*`` here, ``net_*``
    (:mod:`nwguard.ops_network`) and ``iface_*`` (:mod:`nwguard.ops_iface`) on first use."""
