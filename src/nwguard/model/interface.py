"""Guest interfaces: libvirt's ``<interface type='network'|'bridge'>`` as far as nwguard uses it.

Pure data. :meth:`Interface.filter_params` gives the variables its filter is bound with:
the ``<filterref>`` parameters, plus ``IP`` from the ``<ip>`` elements and ``MAC`` from
``<mac>`` when the parameters do not set them.

>>> from ipaddress import ip_address
>>> i = Interface("bridge", "br0", mac="52:54:00:00:00:01", ips=(InterfaceIP(ip_address("10.0.0.5")),),
...               filterref=FilterRef("clean-traffic"))
>>> dict(i.filter_params())
{'IP': ('10.0.0.5',), 'MAC': ('52:54:00:00:00:01',)}
"""

from __future__ import annotations

from dataclasses import dataclass

from .filter import FilterRef, Params, make_params
from .network import IPAddress

INTERFACE_TYPES = ("network", "bridge")


@dataclass(frozen=True, slots=True)
class InterfaceIP:
    """``<ip address='…' [prefix='…'] [peer='…']/>``: an address of the guest."""

    address: IPAddress
    prefix: int | None = None
    peer: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class Interface:
    """A guest port: plugged into ``source`` (a network name or a bridge name by ``type``)."""

    type: str
    source: str
    mac: str | None = None
    target: str | None = None
    managed: bool | None = None
    ips: tuple[InterfaceIP, ...] = ()
    model: str | None = None
    portgroup: str | None = None
    filterref: FilterRef | None = None

    def filter_params(self) -> Params:
        """The filter's variables: parameters, then ``IP``/``MAC`` from the interface."""
        params = dict(self.filterref.params) if self.filterref else {}
        ipv4 = tuple(str(i.address) for i in self.ips if i.address.version == 4)
        ipv6 = tuple(str(i.address) for i in self.ips if i.address.version == 6)
        if ipv4 and "IP" not in params:
            params["IP"] = ipv4
        if ipv6 and "IPV6" not in params:
            params["IPV6"] = ipv6
        if self.mac and "MAC" not in params:
            params["MAC"] = (self.mac,)
        return make_params(params)
