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

from typing import Any

from nwguard.engine.context import Context
from nwguard.state.paths import Paths


# Feature areas loaded on first use: a filter or binding command never pays for the
# networking modules (bridges, dnsmasq, network XML), and vice versa.
_LAZY_MIXINS = (("engine.networks", "NetworkOps"), ("engine.interfaces", "InterfaceOps"))


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


from nwguard.engine.bindings import BindingOps
from nwguard.engine.filters import FilterOps


class Client(FilterOps, BindingOps, _ClientBase):
    """Every nwguard operation: ``nwfilter_*`` and ``nwfilter_binding_*`` here, ``net_*``
    (:mod:`nwguard.ops_network`) and ``iface_*`` (:mod:`nwguard.ops_iface`) on first use."""
