"""Virtual networks: the data of libvirt's ``<network>`` XML that nwguard understands.

Pure data (frozen dataclasses with slots): no I/O, no validation beyond what the types say.
The parser in :mod:`nwguard.xmlio.network_xml` checks values; optional fields stay ``None``
when the XML left them out, so writing and parsing again gives the same object.

>>> from ipaddress import ip_address
>>> ip = IPConfig("ipv4", ip_address("192.168.122.1"), 24)
>>> str(ip.network)
'192.168.122.0/24'
>>> Network("default", ips=(ip,)).mode
'isolated'
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

FORWARD_MODES = ("nat", "route", "open")
"""Forward modes nwguard runs; no ``<forward>`` at all is an isolated network."""

DEFAULT_NAT_PORTS = (1024, 65535)


@dataclass(frozen=True, slots=True)
class NatConfig:
    """``<forward><nat>``: SNAT address range, source port range, IPv6 masquerading."""

    address_start: IPv4Address | None = None
    address_end: IPv4Address | None = None
    port_start: int | None = None
    port_end: int | None = None
    ipv6: bool | None = None

    @property
    def ports(self) -> tuple[int, int]:
        """The source port range for TCP/UDP (default 1024-65535)."""
        if self.port_start is None or self.port_end is None:
            return DEFAULT_NAT_PORTS
        return (self.port_start, self.port_end)


@dataclass(frozen=True, slots=True)
class Forward:
    """``<forward>``: how traffic leaves the bridge. ``mode`` is always set (default nat)."""

    mode: str = "nat"
    dev: str | None = None
    nat: NatConfig | None = None


@dataclass(frozen=True, slots=True)
class Bridge:
    """``<bridge>``: the bridge device; ``None`` fields take libvirt's defaults."""

    name: str | None = None
    stp: bool | None = None
    delay: int | None = None
    zone: str | None = None

    @property
    def stp_on(self) -> bool:
        return True if self.stp is None else self.stp

    @property
    def forward_delay(self) -> int:
        return 0 if self.delay is None else self.delay


@dataclass(frozen=True, slots=True)
class Domain:
    """``<domain name='example.com' localOnly='yes'/>``."""

    name: str
    local_only: bool | None = None


@dataclass(frozen=True, slots=True)
class DnsForwarder:
    """``<dns><forwarder addr='…' domain='…'/>``: upstream server, optionally per domain."""

    addr: IPAddress | None = None
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class DnsHost:
    """``<dns><host ip='…'><hostname>…</hostname></host>``."""

    ip: IPAddress
    hostnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dns:
    """``<dns>``: served by the network's dnsmasq."""

    enable: bool | None = None
    forward_plain_names: bool | None = None
    forwarders: tuple[DnsForwarder, ...] = ()
    hosts: tuple[DnsHost, ...] = ()

    @property
    def enabled(self) -> bool:
        return True if self.enable is None else self.enable


@dataclass(frozen=True, slots=True)
class Lease:
    """``<lease expiry='1' unit='hours'/>``; expiry 0 means infinite."""

    expiry: int
    unit: str | None = None

    @property
    def seconds(self) -> int:
        """Lease time in seconds (0 = infinite)."""
        return self.expiry * {"seconds": 1, "minutes": 60, "hours": 3600}[self.unit or "minutes"]


@dataclass(frozen=True, slots=True)
class DhcpRange:
    start: IPAddress
    end: IPAddress
    lease: Lease | None = None


@dataclass(frozen=True, slots=True)
class DhcpHost:
    """A static DHCP host: by MAC (IPv4) or DUID ``id`` (IPv6), with a name and/or address."""

    mac: str | None = None
    id: str | None = None
    name: str | None = None
    ip: IPAddress | None = None
    lease: Lease | None = None


@dataclass(frozen=True, slots=True)
class IPConfig:
    """``<ip>``: one address of the bridge, its subnet, and DHCP for it.

    ``netmask_given`` remembers whether the XML used ``netmask`` (IPv4) or ``prefix``.
    """

    family: str
    address: IPAddress
    prefix: int
    netmask_given: bool = False
    ranges: tuple[DhcpRange, ...] = ()
    hosts: tuple[DhcpHost, ...] = ()
    has_dhcp: bool = False
    local_ptr: bool | None = None

    @property
    def network(self) -> IPNetwork:
        """The subnet, e.g. ``192.168.122.0/24``."""
        return ip_network(f"{self.address}/{self.prefix}", strict=False)

    @property
    def is_v6(self) -> bool:
        return self.family == "ipv6"


@dataclass(frozen=True, slots=True)
class Network:
    """A virtual network. ``forward`` ``None`` means isolated."""

    name: str
    uuid: str | None = None
    forward: Forward | None = None
    bridge: Bridge = Bridge()
    mac: str | None = None
    mtu: int | None = None
    domain: Domain | None = None
    dns: Dns | None = None
    ips: tuple[IPConfig, ...] = ()
    ipv6: bool | None = None
    trust_guest_rx_filters: bool | None = None

    @property
    def mode(self) -> str:
        """``isolated``, ``nat``, ``route`` or ``open``."""
        return "isolated" if self.forward is None else self.forward.mode

    @property
    def bridge_name(self) -> str:
        """The bridge device name; only valid once the network has been defined."""
        if not self.bridge.name:
            raise ValueError(f"network {self.name!r} has no bridge name yet")
        return self.bridge.name

    def ips_of(self, family: str) -> tuple[IPConfig, ...]:
        """The ``<ip>`` elements of one family (``ipv4`` or ``ipv6``)."""
        return tuple(ip for ip in self.ips if ip.family == family)

    @property
    def has_ipv6(self) -> bool:
        """IPv6 addresses configured, or guest-to-guest IPv6 asked for with ``ipv6='yes'``."""
        return bool(self.ips_of("ipv6")) or bool(self.ipv6)

    def dhcp_ip(self, family: str) -> IPConfig | None:
        """The ``<ip>`` of ``family`` that serves DHCP (at most one per family)."""
        for ip in self.ips_of(family):
            if ip.ranges or ip.hosts:
                return ip
        return None
