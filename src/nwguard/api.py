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

    @contextlib.contextmanager
    def lock(self, shared: bool = False) -> Iterator[None]:
        """Serialise changes between nwguard processes (and the daemon)."""
        with locked(self.paths.lock_file, shared=shared):
            yield


def _mixins() -> tuple[type, ...]:
    from .ops_nwfilter import FilterOps

    bases: list[type] = [FilterOps]
    for mod, name in (
        ("ops_binding", "BindingOps"),
        ("ops_network", "NetworkOps"),
        ("ops_iface", "InterfaceOps"),
    ):
        try:
            module = __import__(f"nwguard.{mod}", fromlist=[name])
        except ModuleNotFoundError as exc:  # a feature area not built yet
            if exc.name != f"nwguard.{mod}":
                raise
            continue
        bases.append(getattr(module, name))
    return tuple(bases)


class _ClientBase:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @classmethod
    def open(
        cls,
        config_dir: str | None = None,
        state_dir: str | None = None,
        dry_run: bool = False,
    ) -> "Client":
        """Open a client on a configuration and a state directory (defaults: see Paths)."""
        return Client(Context(Paths.from_env(config_dir, state_dir), dry_run=dry_run))


Client = type("Client", (*_mixins(), _ClientBase), {"__doc__": _ClientBase.__doc__})
