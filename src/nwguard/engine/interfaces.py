"""Client operations on guest interfaces: libvirt ``<interface>`` XML → port + filter binding.

``iface_attach`` creates the host-side port if needed (a tap, or a veth whose peer the caller
moves into its guest), plugs it into the bridge of its ``<source>``, and binds its
``<filterref>`` with ``$IP`` from its ``<ip>`` elements and ``$MAC`` from ``<mac>`` — all or
nothing: if binding fails, a port it created is removed again.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from nwguard.errors import ConflictError, NotFoundError
from nwguard.state.files import atomic_write, remove_file
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import FilterRef, make_params
from nwguard.model.interface import Interface
from nwguard.model.values import random_mac
from nwguard.xmlio.binding_xml import write_binding
from nwguard.xmlio.interface_xml import parse_interface

if TYPE_CHECKING:
    from nwguard.engine.context import Context


@dataclass(frozen=True, slots=True)
class InterfaceRecord:
    dev: str
    type: str
    bridge: str | None
    network: str | None
    mac: str
    ips: list[str]
    filter: str | None
    created: bool  # nwguard made the device (and removes it on detach)


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
    return FilterBinding(f"iface-{dev}", str(owner), dev, mac, FilterRef(i.filterref.filter, make_params(params)))


class InterfaceOps:
    """Attach, detach and list guest interfaces (``nwguard iface-*``)."""

    ctx: Context

    def _iface_file(self, dev: str) -> Any:
        return self.ctx.paths.state_dir / "ifaces" / f"{dev}.json"

    def iface_attach(self, xml: str | bytes, file: str | None = None, veth_peer: str | None = None) -> InterfaceRecord:
        """Create/plug the port of an ``<interface>`` and bind its filter, all or nothing."""
        from nwguard.host import port

        i = parse_interface(xml, file)
        with self.ctx.lock():
            bridge = self._iface_bridge(i)
            dev = i.target_dev or port.free_name()
            if self._iface_file(dev).exists():
                raise ConflictError(f"interface {dev} is already attached")
            mac = i.mac or random_mac()
            created = False
            if not self.ctx.dry_run and not port.exists(dev):
                port.create(dev, mac, veth_peer)
                created = True
            try:
                if bridge and not self.ctx.dry_run:
                    port.plug(dev, bridge)
                b = binding_for(i, dev, mac)
                if b is not None:
                    self.nwfilter_binding_create(write_binding(b))  # type: ignore[attr-defined]
            except BaseException:
                if created:
                    port.remove(dev)
                raise
            rec = InterfaceRecord(dev, i.type, bridge, i.source_network, mac, [a for a, _ in i.ips],
                                  i.filterref.filter if i.filterref else None, created)
            if not self.ctx.dry_run:
                atomic_write(self._iface_file(dev), json.dumps(asdict(rec)), durable=False)
        return rec

    def _iface_bridge(self, i: Interface) -> str | None:
        from nwguard.host import port

        if i.type == "network":
            assert i.source_network is not None
            active = {r.name for r in self.net_list()}  # type: ignore[attr-defined]
            if i.source_network not in active:
                raise NotFoundError(f"network '{i.source_network}' is not active")
            return self.net_info(i.source_network)["Bridge"]  # type: ignore[attr-defined,no-any-return]
        if i.type == "bridge":
            assert i.source_bridge is not None
            if not self.ctx.dry_run and not port.exists(i.source_bridge):
                raise NotFoundError(f"bridge '{i.source_bridge}' does not exist")
            return i.source_bridge
        return None  # type ethernet: bridged (or not) by someone else

    def iface_detach(self, dev: str) -> None:
        """Remove the interface's binding and, if nwguard created it, the device."""
        from nwguard.host import port

        with self.ctx.lock():
            f = self._iface_file(dev)
            if not f.exists():
                raise NotFoundError(f"interface {dev} is not attached by nwguard")
            rec = json.loads(f.read_text())
            if rec["filter"] is not None:
                try:
                    self.nwfilter_binding_delete(dev)  # type: ignore[attr-defined]
                except NotFoundError:
                    pass  # removed by hand or by the daemon already
            if rec["created"] and not self.ctx.dry_run:
                port.remove(dev)
            if not self.ctx.dry_run:
                remove_file(f)

    def iface_list(self) -> list[InterfaceRecord]:
        """Attached interfaces, sorted by device."""
        d = self.ctx.paths.state_dir / "ifaces"
        out = [InterfaceRecord(**json.loads(f.read_text())) for f in sorted(d.glob("*.json"))] if d.is_dir() else []
        return out
