"""The nwfilter protocols and their attributes, as one table.

This table drives the XML parser and writer, validation, variable iteration order and the
compilers: an attribute exists for a protocol exactly when it is listed here, in libvirt's
order (which is also the order a rule's variables are iterated in).
"""

from __future__ import annotations

from enum import Enum

from nwguard.model import values as v
from nwguard.records import ValueRecord


class Layer(Enum):
    """Where libvirt puts a protocol: ebtables (Ethernet), iptables (IPv4), ip6tables (IPv6)."""

    ETHERNET = "ethernet"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class Attr(ValueRecord):
    name: str
    type: v.ValueType
    base: str | None = None  # a mask/range end: takes the negation of this attribute


class Protocol(ValueRecord):
    name: str
    layer: Layer
    attrs: tuple[Attr, ...]

    def attr(self, name: str) -> Attr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None

    @property
    def attr_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attrs)


def _a(name: str, vtype: v.ValueType, base: str | None = None) -> Attr:
    return Attr(name, vtype, base)


L2 = (
    _a("srcmacaddr", v.MAC),
    _a("srcmacmask", v.MAC_MASK, "srcmacaddr"),
    _a("dstmacaddr", v.MAC),
    _a("dstmacmask", v.MAC_MASK, "dstmacaddr"),
)
COMMENT = _a("comment", v.COMMENT)


def _ports() -> tuple[Attr, ...]:
    return (
        _a("srcportstart", v.UINT16),
        _a("srcportend", v.UINT16, "srcportstart"),
        _a("dstportstart", v.UINT16),
        _a("dstportend", v.UINT16, "dstportstart"),
    )


def _addr_mask(addr: v.ValueType, mask: v.ValueType, prefix: str = "") -> tuple[Attr, ...]:
    """``{prefix}srcipaddr``, its mask, ``{prefix}dstipaddr``, its mask."""
    return (
        _a(f"{prefix}srcipaddr", addr),
        _a(f"{prefix}srcipmask", mask, f"{prefix}srcipaddr"),
        _a(f"{prefix}dstipaddr", addr),
        _a(f"{prefix}dstipmask", mask, f"{prefix}dstipaddr"),
    )


def _ip_header(addr: v.ValueType, mask: v.ValueType) -> tuple[Attr, ...]:
    """What the ``ip`` and ``ipv6`` elements share, in libvirt's order."""
    return (*L2, *_addr_mask(addr, mask), _a("protocol", v.IP_PROTOCOL), *_ports())


def _common_ip(addr: v.ValueType, mask: v.ValueType) -> tuple[Attr, ...]:
    return (
        _a("srcmacaddr", v.MAC),
        *_addr_mask(addr, mask),
        _a("srcipfrom", addr),
        _a("srcipto", addr, "srcipfrom"),
        _a("dstipfrom", addr),
        _a("dstipto", addr, "dstipfrom"),
        _a("dscp", v.DSCP),
        _a("state", v.STATE),
        _a("ipset", v.IPSET_NAME),
        _a("ipsetflags", v.IPSET_FLAGS),
        _a("connlimit-above", v.UINT16),
        COMMENT,
    )


_ARP_ATTRS = (
    *L2,
    _a("hwtype", v.UINT16),
    _a("protocoltype", v.UINT16),
    _a("opcode", v.ARP_OPCODE),
    _a("arpsrcmacaddr", v.MAC),
    _a("arpdstmacaddr", v.MAC),
    *_addr_mask(v.IPV4, v.IPV4_MASK, "arp"),
    _a("gratuitous", v.BOOLEAN),
    COMMENT,
)


def _stp_range(name: str, vtype: v.ValueType) -> tuple[Attr, Attr]:
    return _a(name, vtype), _a(f"{name}-hi", vtype, name)


_STP_ATTRS = (
    _a("srcmacaddr", v.MAC),
    _a("srcmacmask", v.MAC_MASK, "srcmacaddr"),
    _a("type", v.UINT8),
    _a("flags", v.UINT8),
    *_stp_range("root-priority", v.UINT16),
    _a("root-address", v.MAC),
    _a("root-address-mask", v.MAC_MASK, "root-address"),
    *_stp_range("root-cost", v.UINT32),
    *_stp_range("sender-priority", v.UINT16),
    _a("sender-address", v.MAC),
    _a("sender-address-mask", v.MAC_MASK, "sender-address"),
    *_stp_range("port", v.UINT16),
    *_stp_range("age", v.UINT16),
    *_stp_range("max-age", v.UINT16),
    *_stp_range("hello-time", v.UINT16),
    *_stp_range("forward-delay", v.UINT16),
    COMMENT,
)

_IP4 = _common_ip(v.IPV4, v.IPV4_MASK)
_IP6 = _common_ip(v.IPV6, v.IPV6_MASK)
# (IPv4 element, IPv6 element, attributes after the common ones) in libvirt's IPv4 order;
# libvirt lists icmpv6 last among the IPv6 ones.
_L4: tuple[tuple[str, str | None, tuple[Attr, ...]], ...] = (
    ("tcp", "tcp-ipv6", (*_ports(), _a("option", v.UINT8), _a("flags", v.TCP_FLAGS))),
    ("udp", "udp-ipv6", _ports()),
    ("sctp", "sctp-ipv6", _ports()),
    ("udplite", "udplite-ipv6", ()),
    ("esp", "esp-ipv6", ()),
    ("ah", "ah-ipv6", ()),
    ("igmp", None, ()),
    ("icmp", "icmpv6", (_a("type", v.UINT8), _a("code", v.UINT8, "type"))),
    ("all", "all-ipv6", ()),
)
_L4_V6_ORDER = sorted(_L4, key=lambda row: row[1] == "icmpv6")

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("mac", Layer.ETHERNET, (*L2, _a("protocolid", v.ETHERTYPE), COMMENT)),
        Protocol(
            "vlan",
            Layer.ETHERNET,
            (*L2, _a("vlanid", v.VLAN_ID), _a("encap-protocol", v.ENCAP_PROTOCOL), COMMENT),
        ),
        Protocol("stp", Layer.ETHERNET, _STP_ATTRS),
        Protocol("arp", Layer.ETHERNET, _ARP_ATTRS),
        Protocol("rarp", Layer.ETHERNET, _ARP_ATTRS),
        Protocol(
            "ip", Layer.ETHERNET, (*_ip_header(v.IPV4, v.IPV4_MASK), _a("dscp", v.DSCP), COMMENT)
        ),
        Protocol(
            "ipv6",
            Layer.ETHERNET,
            (
                *_ip_header(v.IPV6, v.IPV6_MASK),
                _a("type", v.UINT8),
                _a("typeend", v.UINT8, "type"),
                _a("code", v.UINT8, "type"),
                _a("codeend", v.UINT8, "type"),
                COMMENT,
            ),
        ),
        *(Protocol(v4, Layer.IPV4, (*_IP4, *extra)) for v4, _, extra in _L4),
        *(Protocol(v6, Layer.IPV6, (*_IP6, *extra)) for _, v6, extra in _L4_V6_ORDER if v6),
    )
}

# libvirt accepts these element names as aliases.
PROTOCOL_ALIASES = {"ipv4": "ip", "tcp-ipv4": "tcp", "udp-ipv4": "udp", "icmp-ipv4": "icmp"}

PORT_ATTRS = ("srcportstart", "srcportend", "dstportstart", "dstportend")
PORT_PROTOCOLS = (6, 17, 33, 132)  # tcp, udp, dccp, sctp

# ----------------------------------------------------------------------------- chains

CHAIN_PREFIXES = ("mac", "vlan", "stp", "arp", "rarp", "ipv4", "ipv6")
MAX_CHAIN_NAME = 12
DEFAULT_CHAIN_PRIORITY = {
    "root": 0,
    "mac": -800,
    "vlan": -750,
    "ipv4": -700,
    "ipv6": -600,
    "arp": -500,
    "rarp": -400,
    # libvirt's table has no stp entry and falls back to the middle of the range.
    "stp": 0,
}
# Ethertype that a sub-chain of this prefix filters (None: every frame; stp: by destination).
CHAIN_ETHERTYPE = {
    "mac": None,
    "stp": None,
    "vlan": 0x8100,
    "arp": 0x0806,
    "rarp": 0x8035,
    "ipv4": 0x0800,
    "ipv6": 0x86DD,
}
STP_GROUP_MAC = "01:80:c2:00:00:00"


def chain_prefix(chain: str) -> str:
    """The protocol prefix of a chain name (``root`` for the root chain)."""
    if chain == "root":
        return "root"
    for prefix in CHAIN_PREFIXES:
        if chain.startswith(prefix):
            return prefix
    raise ValueError(chain)


ACTIONS = ("drop", "accept", "reject", "return", "continue")
DIRECTIONS = ("in", "out", "inout")
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
DEFAULT_RULE_PRIORITY = 500
