"""One nwfilter rule → nftables match statements (bridge family), pure.

Attribute values are either literal (typed values from the model) or *slots*: a variable whose
per-port values live in a set keyed by the port's name. :func:`rule_matches` asks a
:class:`SlotSink` to turn each variable attribute into a set lookup, so the same statements
serve every port; ports differ only in set elements.

Direction handling follows libvirt: a mirrored copy swaps source and destination.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

from nwguard.errors import CompileError
from nwguard.ir.nodes import (
    ConnLimit,
    Expr,
    IpSetMatch,
    Masked,
    Match,
    Meta,
    Payload,
    Prefix,
    Range,
    RawPayload,
    Stmt,
    TcpOption,
)
from nwguard.ir.ports import KeyPart
from nwguard.model.filter import AttrValue, Rule
from nwguard.model.protocols import PROTOCOLS, STP_GROUP_MAC, Layer
from nwguard.model.values import ETHERTYPE_NAMES, IP_PROTOCOL_NAMES, Num, VarRef
from nwguard.records import ValueRecord

ETH_IP, ETH_IP6, ETH_ARP, ETH_RARP, ETH_VLAN = (
    ETHERTYPE_NAMES[n] for n in ("ipv4", "ipv6", "arp", "rarp", "vlan")
)

_ALL_ATTRS = {a for p in PROTOCOLS.values() for a in p.attr_names}

# source ↔ destination attributes swapped in a mirrored copy: every src… with a dst… twin
MIRROR = {
    **{
        a: a.replace("src", "dst")
        for a in _ALL_ATTRS
        if "src" in a and a.replace("src", "dst") in _ALL_ATTRS
    },
    **{
        a: a.replace("dst", "src")
        for a in _ALL_ATTRS
        if "dst" in a and a.replace("dst", "src") in _ALL_ATTRS
    },
}

# key types of fields that a variable may fill through a slot set (others: per-port rules)
SET_TYPES = {"ether_addr", "ipv4_addr", "ipv6_addr", "inet_service"}


class Field(ValueRecord):
    """Where an attribute's value is compared: the expression, and the key part it gives a
    slot set (a data type, raw bits compared as a number, or None: it cannot key a set)."""

    expr: Expr
    set_type: KeyPart | None

    @property
    def shareable(self) -> bool:
        return isinstance(self.set_type, RawPayload) or self.set_type in SET_TYPES


class SlotSink(Protocol):
    """Receives variable attributes; returns the statement that matches them (a set lookup)."""

    def lookup(self, fields: list[tuple[Field, VarRef]], negated: bool) -> Stmt: ...


def mirrored(rule: Rule) -> Rule:
    """The copy of ``rule`` for the opposite direction: source and destination swapped."""
    attrs = tuple(
        AttrValue(MIRROR.get(a.name, a.name), _mirror_value(a), a.negated) for a in rule.attrs
    )
    return Rule(rule.action, rule.direction, rule.priority, rule.statematch, rule.protocol, attrs)


def _mirror_value(a: AttrValue) -> Any:
    """ipsetflags name the packet's side of each set dimension: a mirrored copy swaps them."""
    if a.name == "ipsetflags" and isinstance(a.value, tuple):
        return tuple({"src": "dst", "dst": "src"}[w] for w in a.value)
    return a.value


# ----------------------------------------------------------------------------- field tables


def _p(proto: str, field: str, set_type: str | None = None) -> Field:
    return Field(Payload(proto, field), set_type)


_L2_FIELDS = {
    "srcmacaddr": _p("ether", "saddr", "ether_addr"),
    "dstmacaddr": _p("ether", "daddr", "ether_addr"),
}
_ARP_FIELDS = {
    **_L2_FIELDS,
    "hwtype": _p("arp", "htype"),
    "protocoltype": _p("arp", "ptype"),
    "opcode": _p("arp", "operation"),
    "arpsrcmacaddr": _p("arp", "saddr ether", "ether_addr"),
    "arpdstmacaddr": _p("arp", "daddr ether", "ether_addr"),
    "arpsrcipaddr": _p("arp", "saddr ip", "ipv4_addr"),
    "arpdstipaddr": _p("arp", "daddr ip", "ipv4_addr"),
}


def _raw_arp(byte: int, nbytes: int) -> Field:
    raw = RawPayload("nh", byte * 8, nbytes * 8)
    return Field(raw, raw)  # a raw load keys a set as itself


# RARP has ARP's layout, but nft puts an implicit ``ether type arp`` in front of every typed
# ``arp`` payload, so a RARP rule written with them never matches a RARP frame. RARP fields
# are raw network-header loads instead. Raw loads can key a set only when it is declared with
# ``typeof`` — which nft 1.0.6 accepts in its text syntax, not in JSON — so such sets have
# the raw load itself as key part and the backend creates them in nft syntax.
_RARP_FIELDS = {
    **_L2_FIELDS,
    "hwtype": _raw_arp(0, 2),
    "protocoltype": _raw_arp(2, 2),
    "opcode": _raw_arp(6, 2),
    "arpsrcmacaddr": _raw_arp(8, 6),
    "arpsrcipaddr": _raw_arp(14, 4),
    "arpdstmacaddr": _raw_arp(18, 6),
    "arpdstipaddr": _raw_arp(24, 4),
}


def _ip_fields(ip: str, addr_type: str) -> dict[str, Field]:
    return {
        "srcipaddr": _p(ip, "saddr", addr_type),
        "dstipaddr": _p(ip, "daddr", addr_type),
        "srcipfrom": _p(ip, "saddr"),
        "dstipfrom": _p(ip, "daddr"),
        "protocol": Field(Meta("l4proto"), None),
        "srcportstart": _p("th", "sport", "inet_service"),
        "dstportstart": _p("th", "dport", "inet_service"),
        "dscp": _p(ip, "dscp"),
    }


_IP_FIELDS = _ip_fields("ip", "ipv4_addr")
_IP6_FIELDS = {
    **_ip_fields("ip6", "ipv6_addr"),
    "type": _p("icmpv6", "type"),
    "code": _p("icmpv6", "code"),
}


def _stp_raw(byte: int, nbytes: int) -> Field:
    return Field(RawPayload("ll", byte * 8, nbytes * 8), None)


# BPDU fields: offset from the start of the frame (14 bytes Ethernet + 3 bytes LLC).
_STP_FIELDS = {
    "srcmacaddr": _p("ether", "saddr", "ether_addr"),
    "type": _stp_raw(20, 1),
    "flags": _stp_raw(21, 1),
    "root-priority": _stp_raw(22, 2),
    "root-address": _stp_raw(24, 6),
    "root-cost": _stp_raw(30, 4),
    "sender-priority": _stp_raw(34, 2),
    "sender-address": _stp_raw(36, 6),
    "port": _stp_raw(42, 2),
    "age": _stp_raw(44, 2),
    "max-age": _stp_raw(46, 2),
    "hello-time": _stp_raw(48, 2),
    "forward-delay": _stp_raw(50, 2),
}
_STP_CONFIG_ONLY = {
    "root-priority",
    "root-address",
    "root-cost",
    "sender-priority",
    "sender-address",
    "port",
    "age",
    "max-age",
    "hello-time",
    "forward-delay",
}


def _l4_fields(proto: str, ip: str, addr_type: str) -> dict[str, Field]:
    base = {
        "srcmacaddr": _p("ether", "saddr", "ether_addr"),
        "srcipaddr": _p(ip, "saddr", addr_type),
        "dstipaddr": _p(ip, "daddr", addr_type),
        "srcipfrom": _p(ip, "saddr"),
        "dstipfrom": _p(ip, "daddr"),
        "dscp": _p(ip, "dscp"),
    }
    if proto in ("tcp", "udp", "sctp"):
        base["srcportstart"] = _p(proto, "sport", "inet_service")
        base["dstportstart"] = _p(proto, "dport", "inet_service")
    if proto == "tcp":
        base["flags"] = _p("tcp", "flags")
    if proto in ("icmp", "icmpv6"):
        base["type"] = _p(proto, "type")
        base["code"] = _p(proto, "code")
    return base


# ----------------------------------------------------------------------------- compiling


Lit = Callable[[Any], Any]


def rule_matches(rule: Rule, sink: SlotSink) -> list[Stmt]:
    """The match statements of ``rule`` (already mirrored if it is a mirrored copy)."""
    if rule.protocol is None:
        return []
    attrs = {a.name: a for a in rule.attrs}
    if rule.layer is Layer.ETHERNET:
        return _ethernet(rule.protocol, attrs, sink)
    return _l4(rule.protocol, attrs, sink)


def _ethernet(proto: str, attrs: dict[str, AttrValue], sink: SlotSink) -> list[Stmt]:
    if proto == "mac":
        return _emit(attrs, {**_L2_FIELDS, "protocolid": _p("ether", "type")}, sink)
    if proto == "vlan":
        guard = [Match(Payload("ether", "type"), ETH_VLAN)]
        fields = {**_L2_FIELDS, "vlanid": _p("vlan", "id"), "encap-protocol": _p("vlan", "type")}
        return guard + _emit(attrs, fields, sink)
    if proto == "stp":
        return _stp(attrs, sink)
    if proto in ("arp", "rarp"):
        fields = _ARP_FIELDS if proto == "arp" else _RARP_FIELDS
        guard = [Match(Payload("ether", "type"), ETH_ARP if proto == "arp" else ETH_RARP)]
        out = guard + _emit(attrs, fields, sink)
        gratuitous = attrs.get("gratuitous")
        if gratuitous is not None and isinstance(gratuitous.value, VarRef):
            raise NotShareable("gratuitous")
        if gratuitous is not None and gratuitous.value is True:
            # sender IP == target IP: a match of two fields (false: ignored, as libvirt does)
            out.append(Match(fields["arpsrcipaddr"].expr, fields["arpdstipaddr"].expr))
        return out
    if proto == "ip":
        return [Match(Payload("ether", "type"), ETH_IP)] + _emit(
            attrs, {**_L2_FIELDS, **_IP_FIELDS}, sink
        )
    if proto == "ipv6":
        out = [Match(Payload("ether", "type"), ETH_IP6)]
        if (
            any(k in attrs for k in ("type", "typeend", "code", "codeend"))
            and "protocol" not in attrs
        ):
            out.append(Match(Meta("l4proto"), 58))
        return out + _emit(attrs, {**_L2_FIELDS, **_IP6_FIELDS}, sink)
    raise CompileError(f"protocol {proto} is not an Ethernet-layer protocol")  # pragma: no cover


def _stp(attrs: dict[str, AttrValue], sink: SlotSink) -> list[Stmt]:
    out: list[Stmt] = [
        Match(Payload("ether", "daddr"), STP_GROUP_MAC),
        Match(RawPayload("ll", 14 * 8, 24), 0x424203),  # LLC: DSAP/SSAP 0x42, UI frame
    ]
    if _STP_CONFIG_ONLY & attrs.keys():
        out.append(Match(RawPayload("ll", 20 * 8, 8), 0))  # fields of configuration BPDUs
    return out + _emit(attrs, _STP_FIELDS, sink)


# the IP protocol number each L4 protocol element matches (``all``/``all-ipv6``: none)
_L4_PROTO = {
    name: IP_PROTOCOL_NAMES[name.removesuffix("-ipv6")]
    for name, p in PROTOCOLS.items()
    if p.layer is not Layer.ETHERNET and name.removesuffix("-ipv6") in IP_PROTOCOL_NAMES
}


def _l4(proto: str, attrs: dict[str, AttrValue], sink: SlotSink) -> list[Stmt]:
    v6 = proto.endswith("-ipv6") or proto == "icmpv6"
    base = proto.removesuffix("-ipv6")
    out: list[Stmt] = [Match(Payload("ether", "type"), ETH_IP6 if v6 else ETH_IP)]
    if proto in _L4_PROTO:
        out.append(Match(Meta("l4proto"), _L4_PROTO[proto]))
    if "code" in attrs and "type" not in attrs:
        # libvirt emits the code only inside --icmp-type TYPE/CODE: without a type it is ignored.
        attrs = {k: v for k, v in attrs.items() if k != "code"}
    fields = _l4_fields(base, "ip6" if v6 else "ip", "ipv6_addr" if v6 else "ipv4_addr")
    out += _emit(attrs, fields, sink)
    if "option" in attrs:
        out.append(_tcp_option(attrs["option"]))
    return out + _after_state(attrs)


def _after_state(attrs: dict[str, AttrValue]) -> list[Stmt]:
    """ipset and connlimit-above: typed matches a backend places after the state match."""
    out: list[Stmt] = []
    ipset, flags, limit = (attrs.get(n) for n in ("ipset", "ipsetflags", "connlimit-above"))
    for av in (ipset, flags, limit):
        if av is not None and isinstance(av.value, VarRef):
            raise NotShareable(av.name)  # expanded per port, then literal
    if ipset is not None and flags is not None:  # libvirt needs both (and ignores match='no')
        out.append(IpSetMatch(str(ipset.value), tuple(flags.value)))
    if limit is not None:
        out.append(ConnLimit(limit.value.value, limit.negated))
    return out


def _tcp_option(av: AttrValue) -> Stmt:
    if isinstance(av.value, VarRef):
        raise CompileError("tcp option cannot come from a variable")
    return Match(TcpOption(av.value.value), av.value.value, "!=" if av.negated else "==")


# ----------------------------------------------------------------------------- attribute → match


def _companion_names(name: str) -> tuple[str, ...]:
    """How libvirt names the mask or range end of attribute ``name``."""
    return (
        name.replace("addr", "mask"),
        name.replace("start", "end"),
        name.replace("from", "to"),
        f"{name}end",
        f"{name}-hi",
        f"{name}-mask",
    )


# attribute -> its mask or range end: the table's attributes that complete another one
_COMPANIONS = {
    a.name: c
    for p in PROTOCOLS.values()
    for a in p.attrs
    for c in _companion_names(a.name)
    if c != a.name and (attr := p.attr(c)) is not None and attr.base is not None
}
_PREFIX_LEN = {"ipv4_addr": 32, "ipv6_addr": 128}
_ADDR_MASKED = {"srcipaddr", "dstipaddr", "arpsrcipaddr", "arpdstipaddr"}
_MAC_MASKED = {"srcmacaddr", "dstmacaddr", "root-address", "sender-address"}
_STATE_ATTRS = {
    "state",
    "comment",
    "gratuitous",
    "option",
    "ipset",
    "ipsetflags",
    "connlimit-above",
}


def _emit(attrs: dict[str, AttrValue], fields: dict[str, Field], sink: SlotSink) -> list[Stmt]:
    out: list[Stmt] = []
    variables: list[tuple[Field, VarRef, bool]] = []
    for name, av in attrs.items():
        if name in _STATE_ATTRS:
            continue  # handled by the caller (state, comment, ...)
        if name in _ENDS:
            if _ENDS[name] not in attrs:
                raise CompileError(f"'{name}' needs '{_ENDS[name]}'")
            continue  # emitted with its base attribute
        if name not in fields:
            raise CompileError(f"attribute '{name}' has no nftables equivalent here")
        field = fields[name]
        companion = attrs.get(_COMPANIONS.get(name, ""))
        if isinstance(av.value, VarRef) or (companion and isinstance(companion.value, VarRef)):
            if companion is not None or not field.shareable or not isinstance(av.value, VarRef):
                raise NotShareable(name)
            variables.append((field, av.value, av.negated))
            continue
        if name in ("srcipfrom", "dstipfrom") and companion is not None:
            lo, hi = ipaddress.ip_address(str(av.value)), ipaddress.ip_address(str(companion.value))
            if int(lo) > int(hi):  # one family: the protocol's address type
                # iptables' iprange tests from <= addr <= to: a reversed range matches no
                # address (negated: every one); nft refuses a reversed range outright
                if not av.negated:
                    first, last = type(lo)(0), type(lo)(2**lo.max_prefixlen - 1)
                    out.append(Match(field.expr, Range(str(lo), str(last))))
                    out.append(Match(field.expr, Range(str(first), str(hi))))
                continue
        out.append(
            Match(field.expr, _literal(name, av, companion, field), "!=" if av.negated else "==")
        )
    out += _lookups(variables, sink)
    return out


_ENDS = {v: k for k, v in _COMPANIONS.items()}


class NotShareable(Exception):
    """A variable attribute that cannot become a set lookup; the caller expands it per port."""


def _lookups(variables: list[tuple[Field, VarRef, bool]], sink: SlotSink) -> list[Stmt]:
    if not variables:
        return []
    positive = [(f, v) for f, v, neg in variables if not neg]
    negative = [(f, v) for f, v, neg in variables if neg]
    out = [sink.lookup(positive, False)] if positive else []
    out += [sink.lookup([fv], True) for fv in negative]
    return out


def _literal(name: str, av: AttrValue, companion: AttrValue | None, field: Field) -> Any:
    value = av.value
    if isinstance(field.expr, RawPayload) and field.expr.base == "nh":
        return _raw_arp_literal(value, companion)
    if isinstance(value, Num):
        if companion is not None:
            return Range(value.value, companion.value.value)
        return value.value
    if isinstance(value, tuple) and name == "flags":  # tcp flags: (mask, set)
        return Masked(value[1], value[0])
    if name in _ADDR_MASKED and companion is not None:
        length = companion.value
        net = ipaddress.ip_network(f"{value}/{length}", strict=False)
        width = 32 if net.version == 4 else 128
        return (
            str(net.network_address)
            if length == width
            else Prefix(str(net.network_address), length)
        )
    if name in ("srcipfrom", "dstipfrom"):
        return Range(value, companion.value) if companion else value
    if name in _MAC_MASKED and companion is not None:
        return _masked_mac(value, companion.value, isinstance(field.expr, RawPayload))
    if name in ("root-address", "sender-address"):
        return int(value.replace(":", ""), 16)
    return value


def _raw_arp_literal(value: Any, companion: AttrValue | None) -> Any:
    """A RARP field's value as the integer its raw load compares with."""
    if isinstance(value, Num):
        return value.value
    if ":" in str(value):  # a MAC address
        return int(str(value).replace(":", ""), 16)
    addr = int(ipaddress.IPv4Address(str(value)))
    length = 32 if companion is None else int(companion.value)
    if length == 32:
        return addr
    mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    return Masked(addr & mask, mask)


def _masked_mac(addr: str, mask: str, raw: bool) -> Masked:
    """``field & mask == addr & mask``; a raw load compares numbers, not addresses."""
    masked = ":".join(
        f"{int(a, 16) & int(b, 16):02x}"
        for a, b in zip(addr.split(":"), mask.split(":"), strict=True)
    )
    if raw:
        return Masked(int(masked.replace(":", ""), 16), int(mask.replace(":", ""), 16))
    return Masked(masked, mask)
