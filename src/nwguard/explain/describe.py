"""A packet from a short description, as the bytes of an Ethernet frame (pure).

>>> d = describe("tcp 10.0.0.5:40000 > 10.0.0.9:25", src_mac="52:54:00:00:00:05",
...              dst_mac="52:54:00:00:00:09")
>>> from nwguard.explain.packet import decode
>>> decode(d).summary()
'52:54:00:00:00:05 > 52:54:00:00:00:09 tcp 10.0.0.5:40000 > 10.0.0.9:25'

Forms (addresses IPv4 or IPv6, ``[v6]:port`` with a port):

* ``tcp SRC:PORT > DST:PORT [flags S|SA|A|R|F...]`` (default ``S``), ``udp``, ``sctp`` alike;
* ``icmp SRC > DST [type N] [code N]``, ``ping SRC > DST`` (echo request), ``icmpv6 ...``;
* ``ip SRC > DST [proto N]``;
* ``arp request TARGET tell SENDER`` (or ``who-has``), ``arp reply SENDER is-at MAC [to TARGET]``;
* ``ether TYPE`` (an empty frame of that ethertype, e.g. ``ether 0x88cc``).
"""

from __future__ import annotations

import ipaddress
import struct

from nwguard.errors import NwguardError
from nwguard.model.values import ETHERTYPE_NAMES, IP_PROTOCOL_NAMES

BROADCAST = "ff:ff:ff:ff:ff:ff"
_TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}


class DescriptionError(NwguardError):
    code = "invalid-packet"


def _mac(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise DescriptionError(f"'{text}' is not a MAC address")
    return raw


def _endpoint(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int | None]:
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    try:
        return ipaddress.ip_address(host), port
    except ValueError:
        raise DescriptionError(f"'{text}' is not an address[:port]") from None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(src: Address, dst: Address, proto: int, body: bytes) -> tuple[int, bytes]:
    if src.version != dst.version:
        raise DescriptionError("source and destination are not of the same IP version")
    if src.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0,
                          src.packed, dst.packed)  # fmt: skip
        hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
        return ETHERTYPE_NAMES["ipv4"], hdr + body
    hdr = struct.pack("!IHBB16s16s", 0x60000000, len(body), proto, 64, src.packed, dst.packed)
    return ETHERTYPE_NAMES["ipv6"], hdr + body


def _kv(tokens: list[str], allowed: set[str]) -> dict[str, str]:
    if len(tokens) % 2:
        raise DescriptionError(f"expected pairs of {'/'.join(sorted(allowed))} and a value")
    out = dict(zip(tokens[::2], tokens[1::2], strict=True))
    unknown = set(out) - allowed
    if unknown:
        raise DescriptionError(f"unknown word(s) {', '.join(sorted(unknown))}")
    return out


def describe(text: str, *, src_mac: str, dst_mac: str, vlan: int | None = None) -> bytes:
    """The frame ``text`` describes, with Ethernet addresses ``src_mac`` > ``dst_mac``."""
    words = text.split()
    if not words:
        raise DescriptionError("the packet description is empty")
    kind, rest = words[0].lower(), words[1:]
    ethertype: int
    if kind == "arp":
        ethertype, payload, dst_mac, src_mac = _arp(rest, src_mac, dst_mac)
    elif kind == "ether":
        if len(rest) != 1:
            raise DescriptionError("ether takes one ethertype: ether 0x88cc")
        ethertype, payload = int(rest[0], 0), bytes(46)
    else:
        ethertype, payload = _ip_packet(kind, rest)
    head = _mac(dst_mac) + _mac(src_mac)
    if vlan is not None:
        head += struct.pack("!HH", ETHERTYPE_NAMES["vlan"], vlan & 0xFFF)
    frame = head + struct.pack("!H", ethertype) + payload
    return frame + bytes(max(0, 60 - len(frame)))


def _ip_packet(kind: str, rest: list[str]) -> tuple[int, bytes]:
    if len(rest) < 3 or rest[1] != ">":
        raise DescriptionError(f"expected '{kind} SRC > DST ...'")
    (src, sport), (dst, dport) = _endpoint(rest[0]), _endpoint(rest[2])
    extra = rest[3:]
    v6 = src.version == 6
    if kind in ("tcp", "udp", "sctp"):
        opts = _kv(extra, {"flags"} if kind == "tcp" else set())
        sp, dp = sport or 40000, dport or 40000
        if kind == "tcp":
            flags = 0
            for ch in opts.get("flags", "S").upper():
                if ch not in _TCP_FLAGS:
                    raise DescriptionError(f"unknown tcp flag '{ch}'; allowed: FSRPAU")
                flags |= _TCP_FLAGS[ch]
            body = struct.pack("!HHIIBBHHH", sp, dp, 1, 0, 5 << 4, flags, 8192, 0, 0)
        elif kind == "udp":
            data = b"nwguard explain"
            body = struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
        else:
            body = struct.pack("!HHII", sp, dp, 0, 0)
        return _ip(src, dst, IP_PROTOCOL_NAMES[kind], body)
    if kind in ("icmp", "icmpv6", "ping"):
        opts = _kv(extra, {"type", "code"} if kind != "ping" else set())
        proto = IP_PROTOCOL_NAMES["icmpv6" if v6 else "icmp"]
        default_type = (128 if v6 else 8) if kind == "ping" or "type" not in opts else 0
        itype = int(opts.get("type", default_type))
        body = struct.pack("!BBHHH", itype, int(opts.get("code", 0)), 0, 1, 1) + b"nwguard"
        if not v6:
            body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        return _ip(src, dst, proto, body)
    if kind == "ip":
        opts = _kv(extra, {"proto"})
        word = opts.get("proto", "0")
        number = IP_PROTOCOL_NAMES.get(word)
        return _ip(src, dst, number if number is not None else int(word), bytes(8))
    raise DescriptionError(
        f"unknown packet kind '{kind}'; allowed: tcp, udp, sctp, icmp, icmpv6, ping, ip, arp, ether"
    )


def _arp(rest: list[str], src_mac: str, dst_mac: str) -> tuple[int, bytes, str, str]:
    """(ethertype, payload, ether dst, ether src) of an ARP request or reply."""

    def body(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
        try:
            s, t = ipaddress.IPv4Address(spa), ipaddress.IPv4Address(tpa)
        except ValueError:
            raise DescriptionError(f"'{spa}' or '{tpa}' is not an IPv4 address") from None
        return struct.pack("!HHBBH6s4s6s4s", 1, ETHERTYPE_NAMES["ipv4"], 6, 4, op, _mac(sha),
                           s.packed, _mac(tha), t.packed)  # fmt: skip

    arp = ETHERTYPE_NAMES["arp"]
    if rest[:1] in (["request"], ["who-has"]) and len(rest) == 4 and rest[2] == "tell":
        return arp, body(1, src_mac, rest[3], "00:00:00:00:00:00", rest[1]), BROADCAST, src_mac
    if rest[:1] == ["reply"] and len(rest) in (4, 6) and rest[2] == "is-at":
        target = rest[5] if len(rest) == 6 and rest[4] == "to" else "0.0.0.0"
        return arp, body(2, rest[3], rest[1], dst_mac, target), dst_mac, src_mac
    raise DescriptionError(
        "expected 'arp request TARGET tell SENDER' or 'arp reply SENDER is-at MAC [to TARGET]'"
    )
