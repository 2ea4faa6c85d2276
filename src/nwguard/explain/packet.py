"""A frame as the bridge family's nftables sees it: header offsets and field loads (pure).

:func:`decode` finds what the kernel's packet info holds for a bridged frame: the network
header (after one 802.1Q tag, which the receive path moves out of the frame and nft puts
back for link-layer loads), the IP layer's protocol and transport header (IPv4 and IPv6,
walking IPv6 extension headers; none for a fragment after the first). A load that the
kernel cannot make (a short frame, no transport header) is ``None``: nft then *breaks* the
rule, which does not match whatever its operator.
"""

from __future__ import annotations

import ipaddress

from nwguard.model.values import ETHERTYPE_NAMES, IP_PROTOCOL_NAMES
from nwguard.records import ValueRecord

ETH_IP, ETH_IP6, ETH_ARP, ETH_VLAN = (ETHERTYPE_NAMES[n] for n in ("ipv4", "ipv6", "arp", "vlan"))
_IP6_EXT = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH (fragment: 44)
ICMP, ICMP6, TCP = (IP_PROTOCOL_NAMES[n] for n in ("icmp", "icmpv6", "tcp"))


class Packet(ValueRecord):
    """One Ethernet frame and where its headers start (offsets in bytes from the frame)."""

    frame: bytes
    nh: int  # network header
    l4proto: int | None = None  # the IP layer's protocol, None when nft has none
    th: int | None = None  # transport header, None for non-first fragments or non-IP

    def load(self, base: str, offset_bits: int, length_bits: int) -> int | None:
        """``length_bits`` bits at ``offset_bits`` of header ``base`` (ll, nh, th), or None."""
        start = {"ll": 0, "nh": self.nh, "th": self.th}[base]
        if start is None:
            return None
        first, last = start * 8 + offset_bits, start * 8 + offset_bits + length_bits
        if last > len(self.frame) * 8:
            return None
        lo, hi = first // 8, (last + 7) // 8
        value = int.from_bytes(self.frame[lo:hi], "big")
        value >>= hi * 8 - last
        return value & ((1 << length_bits) - 1)

    @property
    def ethertype(self) -> int | None:
        return self.load("ll", 96, 16)

    def summary(self) -> str:
        """A short description of the frame, for the output."""
        mac = self.frame[6:12].hex(":") + " > " + self.frame[0:6].hex(":")
        et = self.ethertype
        parts = [mac]
        if et == ETH_VLAN:
            parts.append(f"vlan {self.load('ll', 116, 12)}")
            et = self.load("ll", 128, 16)
        if et == ETH_ARP and (op := self.load("nh", 48, 16)) is not None:
            sip, tip = self.load("nh", 112, 32), self.load("nh", 192, 32)
            if sip is not None and tip is not None:
                who = ipaddress.IPv4Address(sip)
                name = {1: "request", 2: "reply"}.get(op, f"op {op}")
                parts.append(f"arp {name} {who} > {ipaddress.IPv4Address(tip)}")
        elif et in (ETH_IP, ETH_IP6):
            width = 32 if et == ETH_IP else 128
            src_off, dst_off = (96, 128) if et == ETH_IP else (64, 192)
            src, dst = self.load("nh", src_off, width), self.load("nh", dst_off, width)
            if src is not None and dst is not None:
                addr = ipaddress.IPv4Address if et == ETH_IP else ipaddress.IPv6Address
                s, d = addr(src), addr(dst)
                names = {v: k for k, v in IP_PROTOCOL_NAMES.items()}
                proto = names.get(self.l4proto or -1) or f"proto {self.l4proto}"
                ports = self.load("th", 0, 16), self.load("th", 16, 16)
                if self.l4proto in (6, 17, 132, 136) and None not in ports:
                    parts.append(f"{proto} {s}:{ports[0]} > {d}:{ports[1]}")
                elif self.l4proto in (ICMP, ICMP6):
                    parts.append(f"{proto} {s} > {d} type {self.load('th', 0, 8)}")
                else:
                    parts.append(f"{proto} {s} > {d}")
        elif et is not None:
            parts.append(f"ethertype 0x{et:04x}")
        return " ".join(parts)


def decode(frame: bytes) -> Packet:
    """The packet info nft has for ``frame`` (an Ethernet frame, first byte = destination)."""
    nh = 14
    et = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else None
    if et == ETH_VLAN and len(frame) >= 18:
        nh = 18  # the receive path untags: the network header follows the tag
        et = int.from_bytes(frame[16:18], "big")
    if et == ETH_IP:
        return _ipv4(frame, nh)
    if et == ETH_IP6:
        return _ipv6(frame, nh)
    return Packet(frame, nh)


def _ipv4(frame: bytes, nh: int) -> Packet:
    hdr = frame[nh : nh + 20]
    if len(hdr) < 20 or hdr[0] >> 4 != 4 or (ihl := (hdr[0] & 0x0F) * 4) < 20:
        return Packet(frame, nh)  # nft_set_pktinfo_ipv4_validate refuses it: no l4proto
    total = int.from_bytes(hdr[2:4], "big")
    if total < ihl or len(frame) - nh < total:
        return Packet(frame, nh)
    fragoff = int.from_bytes(hdr[6:8], "big") & 0x1FFF
    return Packet(frame, nh, hdr[9], None if fragoff else nh + ihl)


def _ipv6(frame: bytes, nh: int) -> Packet:
    if len(frame) < nh + 40 or frame[nh] >> 4 != 6:
        return Packet(frame, nh)
    proto, off = frame[nh + 6], nh + 40
    while True:
        if proto == 44:  # fragment header
            if len(frame) < off + 8:
                return Packet(frame, nh)
            later = int.from_bytes(frame[off + 2 : off + 4], "big") & 0xFFF8
            proto, off = frame[off], off + 8
            if later:
                return Packet(frame, nh, proto, None)
            continue
        if proto not in _IP6_EXT:
            return Packet(frame, nh, proto, off)
        if len(frame) < off + 2:
            return Packet(frame, nh)
        size = (frame[off + 1] + 2) * 4 if proto == 51 else (frame[off + 1] + 1) * 8
        proto, off = frame[off], off + size


def tcp_option_present(p: Packet, kind: int) -> bool | None:
    """Whether the TCP header of ``p`` has option ``kind``; None when nft cannot look."""
    if p.th is None or p.l4proto != TCP or len(p.frame) < p.th + 20:
        return None
    end = p.th + (p.frame[p.th + 12] >> 4) * 4
    i = p.th + 20
    while i < min(end, len(p.frame)):
        k = p.frame[i]
        if k == kind:
            return True
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= len(p.frame) or p.frame[i + 1] < 2:
            break
        i += p.frame[i + 1]
    return False
