"""Typed attribute values of nwfilter rules and their parsing/formatting.

Each :class:`ValueType` turns attribute text into a typed Python value and back. A value that
starts with ``$`` is a :class:`VarRef` instead. Parsing raises :class:`BadValue` with the list of
what is allowed; the XML layer adds the file/element/attribute location.

>>> MAC.parse("52:54:0:AB:cd:1")
'52:54:00:ab:cd:01'
>>> IPV4_MASK.format(IPV4_MASK.parse("255.255.255.0"))
'24'
>>> parse_value(UINT16, "$PORT[@1]")
VarRef(name='PORT', index=None, iterator=1)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from nwguard.records import ValueRecord


class BadValue(ValueError):
    """A value that does not fit its type; ``allowed`` says what would."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


# ----------------------------------------------------------------------------- variables

MAX_ITERATOR_ID = 1000
VAR_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
VAR_VALUE_RE = re.compile(r"[A-Za-z0-9_.:]+")
# Blanks as libvirt 9.0.0 skips them: around `@` and the number, and after `]` (not before
# `[` nor after a bare $NAME). libvirt also ignores any text after `]`; nwguard refuses it.
_WS = "[ \t\n\r]*"
_VARREF_RE = re.compile(rf"\$([A-Za-z0-9_]+)(?:\[{_WS}(@?){_WS}([0-9]+){_WS}\]{_WS})?")


class VarRef(ValueRecord):
    """``$NAME`` (iterator 0), ``$NAME[@K]`` (iterator K) or ``$NAME[N]`` (element N)."""

    name: str
    index: int | None = None
    iterator: int | None = 0

    @classmethod
    def parse(cls, text: str) -> VarRef:
        m = _VARREF_RE.fullmatch(text)
        if not m:
            raise BadValue(
                "a variable reference $NAME, $NAME[N] or $NAME[@N] with NAME of [A-Za-z0-9_]"
            )
        name, at, num = m.groups()
        if num is None:
            return cls(name)
        n = int(num)
        if at:
            if n > MAX_ITERATOR_ID:
                raise BadValue(f"an iterator id from 0 to {MAX_ITERATOR_ID}")
            return cls(name, None, n)
        return cls(name, n, None)

    def __str__(self) -> str:
        if self.index is not None:
            return f"${self.name}[{self.index}]"
        if self.iterator:
            return f"${self.name}[@{self.iterator}]"
        return f"${self.name}"


# ----------------------------------------------------------------------------- numbers


class Num(ValueRecord):
    """An integer that remembers whether it was written in hex (libvirt writes it back so)."""

    value: int
    hex: bool = False

    def __str__(self) -> str:
        return hex(self.value) if self.hex else str(self.value)


_DEC_RE = re.compile(r"[0-9]+")
_HEX_RE = re.compile(r"(?:0[xX])?[0-9A-Fa-f]+")


class ValueType(ValueRecord):
    """One attribute type: a parser, a formatter and a description of what is allowed."""

    name: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    allowed: str

    def accepts(self, text: str) -> bool:
        """Whether ``parse`` takes ``text``."""
        try:
            self.parse(text)
        except BadValue:
            return False
        return True


def _int_type(name: str, lo: int, hi: int, names: dict[str, int] | None = None) -> ValueType:
    by_value = {v: k for k, v in (names or {}).items()}
    allowed = f"an integer from {lo} to {hi} (decimal or hex)"
    if names:
        allowed += " or one of " + ", ".join(names)

    def parse(text: str) -> Num:
        t = text.strip()
        if names and t.lower() in names:
            return Num(names[t.lower()], False)
        # Decimal first, then hex (as libvirt); ASCII digits only, no sign, no '_'.
        if _DEC_RE.fullmatch(t):
            num = Num(int(t, 10), False)
        elif _HEX_RE.fullmatch(t):
            num = Num(int(t, 16), True)
        else:
            raise BadValue(allowed)
        if not lo <= num.value <= hi:
            raise BadValue(allowed)
        if num.value in by_value:
            num = Num(num.value, False)  # written back by its name: hex or not makes no difference
        return num

    def fmt(v: Num) -> str:
        return by_value.get(v.value) or str(v)

    return ValueType(name, parse, fmt, allowed)


UINT8 = _int_type("UINT8", 0, 0xFF)
UINT16 = _int_type("UINT16", 0, 0xFFFF)
UINT32 = _int_type("UINT32", 0, 0xFFFFFFFF)
DSCP = _int_type("DSCP", 0, 63)
VLAN_ID = _int_type("VLAN_ID", 0, 4095)
ETHERTYPE_NAMES = {"arp": 0x0806, "rarp": 0x8035, "ipv4": 0x0800, "ipv6": 0x86DD, "vlan": 0x8100}
ETHERTYPE = _int_type("ETHERTYPE", 0x0600, 0xFFFF, ETHERTYPE_NAMES)
ENCAP_PROTOCOL = _int_type("ENCAP_PROTOCOL", 0x003C, 0xFFFF, ETHERTYPE_NAMES)
IP_PROTOCOL_NAMES = {
    "tcp": 6,
    "udp": 17,
    "udplite": 136,
    "esp": 50,
    "ah": 51,
    "icmp": 1,
    "igmp": 2,
    "sctp": 132,
    "icmpv6": 58,
}
IP_PROTOCOL = _int_type("IP_PROTOCOL", 0, 255, IP_PROTOCOL_NAMES)
ARP_OPCODE_NAMES = {
    "request": 1,
    "reply": 2,
    "request_reverse": 3,
    "reply_reverse": 4,
    "drarp_request": 5,
    "drarp_reply": 6,
    "drarp_error": 7,
    "inarp_request": 8,
    "arp_nak": 9,
}
_OPCODE_CANON = {
    1: "Request",
    2: "Reply",
    3: "Request_Reverse",
    4: "Reply_Reverse",
    5: "DRARP_Request",
    6: "DRARP_Reply",
    7: "DRARP_Error",
    8: "InARP_Request",
    9: "ARP_NAK",
}
_opcode = _int_type("ARP_OPCODE", 0, 0xFFFF, ARP_OPCODE_NAMES)
ARP_OPCODE = ValueType(
    "ARP_OPCODE", _opcode.parse, lambda v: _OPCODE_CANON.get(v.value) or str(v), _opcode.allowed
)


# ----------------------------------------------------------------------------- addresses

_MAC_RE = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}")


def _parse_mac(text: str) -> str:
    t = text.strip()
    if not _MAC_RE.fullmatch(t):
        raise BadValue("a MAC address of six ':'-separated hex bytes, e.g. 52:54:00:12:34:56")
    return ":".join(f"{int(p, 16):02x}" for p in t.split(":"))


def _contiguous(bits: int, width: int) -> int | None:
    """Prefix length of a contiguous mask, or None."""
    inv = ~bits & ((1 << width) - 1)
    if inv & (inv + 1):
        return None
    return width - inv.bit_length()


def _parse_mac_mask(text: str) -> str:
    try:
        mac = _parse_mac(text)
    except BadValue:
        raise BadValue("a MAC mask of contiguous leading 1-bits, e.g. ff:ff:ff:00:00:00") from None
    if _contiguous(int(mac.replace(":", ""), 16), 48) is None:
        raise BadValue("a MAC mask of contiguous leading 1-bits, e.g. ff:ff:ff:00:00:00")
    return mac


MAC = ValueType("MAC_ADDR", _parse_mac, str, "a MAC address, e.g. 52:54:00:12:34:56")


def is_multicast_mac(mac: str) -> bool:
    """Whether ``mac`` (as :data:`MAC` parses it) is a group address: a guest cannot own one."""
    return bool(int(mac[:2], 16) & 1)


def random_mac(oui: str = "52:54:00") -> str:
    """A random unicast MAC in libvirt's (locally chosen) ``52:54:00`` range."""
    import secrets  # 4 ms to import: only where a MAC is made up

    return oui + ":" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


MAC_MASK = ValueType("MAC_MASK", _parse_mac_mask, str, "a MAC mask, e.g. ff:ff:ff:00:00:00")


def _parse_ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise BadValue("a dotted IPv4 address, e.g. 10.0.0.1") from None


def _parse_ipv6(text: str) -> str:
    try:
        if "%" in text:  # Python accepts a scope id (fe80::1%eth0); libvirt does not
            raise ValueError(text)
        return str(ipaddress.IPv6Address(text.strip()))
    except ValueError:
        raise BadValue("an IPv6 address, e.g. fe80::1") from None


def _mask_type(name: str, width: int, addr_parse: Callable[[str], str], allowed: str) -> ValueType:
    """A mask given as a prefix length or as a contiguous address; parsed to its length."""

    def parse(text: str) -> int:
        t = text.strip()
        if _DEC_RE.fullmatch(t):
            if int(t) > width:
                raise BadValue(allowed)
            return int(t)
        try:
            packed = int(ipaddress.ip_address(addr_parse(t)))
        except BadValue:
            raise BadValue(allowed) from None
        length = _contiguous(packed, width)
        if length is None:
            raise BadValue(allowed)
        return length

    return ValueType(name, parse, str, allowed)


IPV4 = ValueType("IP_ADDR", _parse_ipv4, str, "a dotted IPv4 address, e.g. 10.0.0.1")
IPV4_MASK = _mask_type(
    "IP_MASK", 32, _parse_ipv4, "a prefix length 0-32 or a contiguous dotted mask"
)
IPV6 = ValueType("IPV6_ADDR", _parse_ipv6, str, "an IPv6 address, e.g. fe80::1")
IPV6_MASK = _mask_type(
    "IPV6_MASK", 128, _parse_ipv6, "a prefix length 0-128 or a contiguous IPv6 mask"
)


# ----------------------------------------------------------------------------- keywords

STATE_NAMES = ("NEW", "ESTABLISHED", "RELATED", "INVALID")


def _parse_state(text: str) -> tuple[str, ...]:
    allowed = "a comma list of NEW, ESTABLISHED, RELATED, INVALID, or NONE"
    words = [w.strip().upper() for w in text.split(",")]
    if not words or any(w not in (*STATE_NAMES, "NONE") for w in words):
        raise BadValue(allowed)
    if "NONE" in words:
        return ("NONE",)
    return tuple(s for s in STATE_NAMES if s in words)


STATE = ValueType(
    "STATE", _parse_state, ",".join, "a comma list of NEW, ESTABLISHED, RELATED, INVALID, or NONE"
)

TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20}
_ALL_FLAGS = 0x3F


def _parse_flag_list(text: str) -> int:
    t = text.strip().upper()
    if t in ("", "NONE"):
        return 0
    if t == "ALL":
        return _ALL_FLAGS
    bits = 0
    for w in t.split(","):
        if w not in TCP_FLAG_BITS:
            raise BadValue(
                "MASK/SET, each a comma list of SYN, ACK, URG, PSH, FIN, RST, or ALL or NONE"
            )
        bits |= TCP_FLAG_BITS[w]
    return bits


def _parse_tcp_flags(text: str) -> tuple[int, int]:
    if text.count("/") != 1:
        raise BadValue(
            "MASK/SET, each a comma list of SYN, ACK, URG, PSH, FIN, RST, or ALL or NONE"
        )
    mask, set_ = text.split("/")
    return _parse_flag_list(mask), _parse_flag_list(set_)


def _format_flag_list(bits: int) -> str:
    if bits == 0:
        return "NONE"
    if bits == _ALL_FLAGS:
        return "ALL"
    return ",".join(n for n, b in TCP_FLAG_BITS.items() if bits & b)


TCP_FLAGS = ValueType(
    "TCP_FLAGS",
    _parse_tcp_flags,
    lambda v: f"{_format_flag_list(v[0])}/{_format_flag_list(v[1])}",
    "MASK/SET, each a comma list of SYN, ACK, URG, PSH, FIN, RST, or ALL or NONE",
)

_IPSET_NAME_RE = re.compile(r"[A-Za-z0-9_.:+ -]{1,31}")


def _parse_ipset_name(text: str) -> str:
    if not _IPSET_NAME_RE.fullmatch(text):
        raise BadValue("1 to 31 characters of A-Z a-z 0-9 _ . : + - and space")
    return text


def _parse_ipset_flags(text: str) -> tuple[str, ...]:
    words = text.lower().split(",")
    if not 1 <= len(words) <= 6 or any(w not in ("src", "dst") for w in words):
        raise BadValue("1 to 6 comma-separated words, each src or dst")
    return tuple(words)


IPSET_NAME = ValueType(
    "IPSETNAME", _parse_ipset_name, str, "1 to 31 characters of A-Z a-z 0-9 _ . : + - and space"
)
IPSET_FLAGS = ValueType(
    "IPSETFLAGS", _parse_ipset_flags, ",".join, "1 to 6 comma-separated words, each src or dst"
)

MAX_COMMENT = 256


# Characters XML 1.0 cannot carry (a comment must survive being written out and read back).
_NON_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _parse_comment(text: str) -> str:
    if len(text) > MAX_COMMENT:
        raise BadValue(f"at most {MAX_COMMENT} characters")
    if _NON_XML_RE.search(text):
        raise BadValue(f"text of at most {MAX_COMMENT} characters without control characters")
    return text


COMMENT = ValueType("STRING", _parse_comment, str, f"text of at most {MAX_COMMENT} characters")


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "yes", "1"):
        return True
    if t in ("false", "no", "0"):
        return False
    raise BadValue("one of true, false, yes, no, 1, 0")


BOOLEAN = ValueType(
    "BOOLEAN", _parse_bool, lambda v: "true" if v else "false", "one of true, false, yes, no, 1, 0"
)


def parse_value(vtype: ValueType, text: str) -> Any:
    """Parse attribute text: a variable reference if it starts with ``$``, else a typed value."""
    if text.startswith("$"):
        return VarRef.parse(text)
    return vtype.parse(text)


def format_value(vtype: ValueType, value: Any) -> str:
    return str(value) if isinstance(value, VarRef) else vtype.format(value)
