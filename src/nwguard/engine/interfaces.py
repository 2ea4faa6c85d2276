"""Client operations on guest interfaces: libvirt ``<interface>`` XML → port + filter binding.

``iface_attach`` creates the host-side port if needed (a tap, or a veth whose peer the caller
moves into its guest), plugs it into the bridge of its ``<source>``, and binds its
``<filterref>`` with ``$IP`` from its ``<ip>`` elements and ``$MAC`` from ``<mac>`` — all or
nothing: if binding fails, a port it created is removed again.

What an attach did is an :class:`InterfaceRecord`, ``<state>/ifaces/<dev>.json`` (a
:mod:`~nwguard.state.persist` document; files written before versions existed are version 1).
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nwguard.engine.results import Change, InterfaceChange
from nwguard.errors import ConflictError, NotFoundError
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import FilterRef, make_params
from nwguard.model.interface import Interface
from nwguard.model.values import random_mac
from nwguard.state.persist import Format, RecordDir
from nwguard.xmlio.binding_xml import write_binding
from nwguard.xmlio.interface_xml import parse_interface

if TYPE_CHECKING:
    from nwguard.engine.bindings import BindingService
    from nwguard.engine.context import Context
    from nwguard.engine.networks import NetworkService


@dataclass(frozen=True, slots=True)
class InterfaceRecord:
    """An interface nwguard attached: one row of ``iface-list``, and what detach undoes."""

    dev: str
    type: str
    bridge: str | None
    network: str | None
    mac: str
    ips: tuple[str, ...]
    filter: str | None
    created: bool  # nwguard made the device (and removes it on detach)

    def to_json(self) -> dict[str, Any]:
        return {
            "dev": self.dev, "type": self.type, "bridge": self.bridge, "network": self.network,
            "mac": self.mac, "ips": list(self.ips), "filter": self.filter, "created": self.created,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InterfaceRecord:
        created = d["created"]
        if not isinstance(created, bool):
            raise TypeError(f"created must be true or false, not {created!r}")
        return cls(
            str(d["dev"]), str(d["type"]), d.get("bridge"), d.get("network"), str(d["mac"]),
            tuple(str(a) for a in d.get("ips") or ()), d.get("filter"), created,
        )  # fmt: skip


INTERFACE = Format("interface", 1, InterfaceRecord.from_json, unversioned=1)


def binding_for(i: Interface, dev: str, mac: str) -> FilterBinding | None:
    """The filter binding of an interface: its filterref, $IP/$IPV6 from its <ip>s unless given."""
    if i.filterref is None:
        return None
    params = dict(i.filterref.params)
    v4 = [a for a, _ in i.ips if ":" not in a]
    v6 = [a for a, _ in i.ips if ":" in a]
    if v4 and "IP" not in params:
        params["IP"] = tuple(v4)
    if v6 and "IPV6" not in params:
        params["IPV6"] = tuple(v6)
    owner = uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"nwguard-iface-{dev}")
    return FilterBinding(
        f"iface-{dev}", str(owner), dev, mac, FilterRef(i.filterref.filter, make_params(params))
    )


class InterfaceService:
    """Attach, detach and list guest interfaces (``nwguard iface-*``): a port, its binding
    (through the binding service) and the bridge of its network (the network service)."""

    def __init__(self, ctx: Context, bindings: BindingService, networks: NetworkService) -> None:
        self.ctx = ctx
        self.bindings = bindings
        self.networks = networks

    def _iface_store(self) -> RecordDir[InterfaceRecord]:
        return RecordDir(self.ctx.paths.state_dir / "ifaces", INTERFACE)

    def iface_attach(
        self, xml: str | bytes, file: str | None = None, veth_peer: str | None = None
    ) -> InterfaceChange:
        """Create/plug the port of an ``<interface>`` and bind its filter, all or nothing."""
        from nwguard.host import port

        i = parse_interface(xml, file)
        with self.ctx.lock():
            bridge = self._iface_bridge(i)
            dev = i.target_dev or port.free_name()
            if self._iface_store().exists(dev):
                raise ConflictError(f"interface {dev} is already attached")
            mac = i.mac or random_mac()
            created = False
            bound = None
            if not self.ctx.dry_run and not port.exists(dev):
                port.create(dev, mac, veth_peer)
                created = True
            try:
                if bridge and not self.ctx.dry_run:
                    port.plug(dev, bridge)
                b = binding_for(i, dev, mac)
                if b is not None:
                    bound = self.bindings.nwfilter_binding_create(write_binding(b))
            except BaseException:
                if created:
                    port.remove(dev)
                raise
            rec = InterfaceRecord(dev, i.type, bridge, i.source_network, mac, tuple(a for a, _ in i.ips),
                                  i.filterref.filter if i.filterref else None, created)  # fmt: skip
            if not self.ctx.dry_run:
                self._iface_store().put(dev, rec)
        batch = bound.batch if bound is not None else None
        return InterfaceChange(batch=batch, applied=not self.ctx.dry_run, interface=rec)

    def _iface_bridge(self, i: Interface) -> str | None:
        from nwguard.host import port

        if i.type == "network":
            assert i.source_network is not None
            active = {r.name for r in self.networks.net_list()}
            if i.source_network not in active:
                raise NotFoundError(f"network '{i.source_network}' is not active")
            return self.networks.net_info(i.source_network)["Bridge"]  # type: ignore[no-any-return]
        if i.type == "bridge":
            assert i.source_bridge is not None
            if not self.ctx.dry_run and not port.exists(i.source_bridge):
                raise NotFoundError(f"bridge '{i.source_bridge}' does not exist")
            return i.source_bridge
        return None  # type ethernet: bridged (or not) by someone else

    def iface_detach(self, dev: str) -> Change:
        """Remove the interface's binding and, if nwguard created it, the device."""
        from nwguard.host import port

        with self.ctx.lock():
            store = self._iface_store()
            rec = store.get(dev)
            if rec is None:
                raise NotFoundError(f"interface {dev} is not attached by nwguard")
            unbound = None
            if rec.filter is not None:
                try:
                    unbound = self.bindings.nwfilter_binding_delete(dev)
                except NotFoundError:
                    pass  # removed by hand or by the daemon already
            if rec.created and not self.ctx.dry_run:
                port.remove(dev)
            if not self.ctx.dry_run:
                store.remove(dev)
        batch = unbound.batch if unbound is not None else None
        return Change(batch=batch, applied=not self.ctx.dry_run)

    def iface_list(self) -> list[InterfaceRecord]:
        """Attached interfaces, sorted by device."""
        return list(self._iface_store().items().values())
