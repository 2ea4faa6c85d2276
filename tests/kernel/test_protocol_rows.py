"""Every row of the protocol table and the built-ins the issue names, with real frames.

Each case binds guest ``a`` to a filter ``top`` and sends frames between ``a`` and its peer
``b`` (a bridge that floods, ``b`` listening promiscuously). Each case has frames that must
arrive and frames that must not, in the same test, so a deaf receiver fails it. Most cases
drop what one rule matches: the matching frame is dropped and near misses, each breaking
one attribute, pass. :data:`CASES` lists what each case covers;
``test_every_protocol_row_has_a_kernel_case`` fails when a row of ``model/protocols.py``
has none. Each case runs on both backends (``firewall_backend``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
)
from scapy.layers.l2 import ARP, LLC, STP, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Packet, Raw

from nwguard.model import protocols as P

from .differential import A_IP, A_IP6, A_MAC, B_IP, B_IP6, B_MAC, MISS_IP6, X_IP, _guests
from .lab import Lab
from .nwg import Nwguard, deliveries

pytestmark = pytest.mark.kernel

BCAST = "ff:ff:ff:ff:ff:ff"
LL_A = "fe80::5054:ff:fe0a:a"
DHCP_SERVER = "fe80::12"


@dataclass(frozen=True)
class F:
    """A frame: who sends it, whether it must arrive, the packet (tagged when sent)."""

    label: str
    sender: str  # "a" (out of the guest) or "b" (into it)
    packet: Packet
    passes: bool


@dataclass(frozen=True)
class Case:
    covers: tuple[str, ...]  # protocol rows, "attr:...", "builtin:...", "feature:..."
    body: str  # the root filter's content
    frames: tuple[F, ...]
    params: dict[str, Any] = field(default_factory=dict)
    before: tuple[F, ...] = ()  # sent first (a connection for RELATED)
    reject: Callable[[bytes], bool] | None = None  # a reply the sender must get


def eth(s: str = "a", **kw: Any) -> Ether:
    return Ether(src=A_MAC if s == "a" else B_MAC, dst=B_MAC if s == "a" else A_MAC, **kw)


def ip4(s: str = "a", **kw: Any) -> IP:
    kw.setdefault("src", A_IP if s == "a" else B_IP)
    kw.setdefault("dst", B_IP if s == "a" else A_IP)
    return IP(**kw)


def ip6(s: str = "a", **kw: Any) -> IPv6:
    kw.setdefault("src", A_IP6 if s == "a" else B_IP6)
    kw.setdefault("dst", B_IP6 if s == "a" else A_IP6)
    return IPv6(**kw)


def udp4(s: str = "a", sport: int = 40000, dport: int = 5000, **ip: Any) -> Packet:
    return eth(s) / ip4(s, **ip) / UDP(sport=sport, dport=dport)


def udp6(s: str = "a", sport: int = 40000, dport: int = 5000, **ip: Any) -> Packet:
    return eth(s) / ip6(s, **ip) / UDP(sport=sport, dport=dport)


def raw4(proto: int, s: str = "a", **ip: Any) -> Packet:
    return eth(s) / ip4(s, proto=proto, **ip) / Raw(b"\x00" * 8)


def raw6(nh: int, s: str = "a", **ip: Any) -> Packet:
    return eth(s) / ip6(s, nh=nh, **ip) / Raw(b"\x00" * 8)


def bpdu(bpdutype: int, fwddelay: float = 15.0) -> Packet:
    return (
        Ether(src=A_MAC, dst=P.STP_GROUP_MAC)
        / LLC(dsap=0x42, ssap=0x42, ctrl=3)
        / STP(bpdutype=bpdutype, rootmac=A_MAC, bridgemac=A_MAC, fwddelay=fwddelay)
    )


def arp(s: str = "a", *, ethsrc: str | None = None, **kw: Any) -> Packet:
    kw.setdefault("hwsrc", A_MAC if s == "a" else B_MAC)
    kw.setdefault("psrc", A_IP if s == "a" else B_IP)
    kw.setdefault("pdst", B_IP if s == "a" else A_IP)
    e = Ether(src=ethsrc or (A_MAC if s == "a" else B_MAC), dst=BCAST)
    return e / ARP(**kw)


def drop(body: str, direction: str = "out", statematch: bool = True) -> str:
    sm = "" if statematch else " statematch='false'"
    return f"<rule action='drop' direction='{direction}'{sm}>{body}</rule>"


def dropped(label: str, packet: Packet, s: str = "a") -> F:
    return F(label, s, packet, False)


def passed(label: str, packet: Packet, s: str = "a") -> F:
    return F(label, s, packet, True)


def _quoted(rx: bytes, l4: type[Packet], port: int) -> bool:
    """An ICMP(v6) error quoting an ``l4`` packet from or to ``port``."""
    p = Ether(rx)
    if not (p.haslayer(ICMP) and p[ICMP].type == 3) and not p.haslayer(ICMPv6DestUnreach):
        return False
    err = {UDP: UDPerror, TCP: TCPerror}.get(l4, l4)
    inner = p.getlayer(err) or p.getlayer(l4, 2)
    return inner is not None and port in (inner.sport, inner.dport)


NO_SM = False  # statematch='false': a bare L4 header conntrack may call invalid

CASES: dict[str, Case] = {
    # ---- Ethernet layer
    "mac": Case(
        ("mac", "attr:srcmacaddr", "attr:dstmacmask"),
        drop(
            "<mac srcmacaddr='$MAC' dstmacaddr='52:54:00:0b:00:00' "
            "dstmacmask='ff:ff:ff:ff:00:00' protocolid='0x88b5'/>"
        ),
        (
            dropped("match", eth(type=0x88B5) / Raw(b"x" * 8)),
            dropped("masked dst", Ether(src=A_MAC, dst="52:54:00:0b:77:77", type=0x88B5)),
            passed("dst outside the mask", Ether(src=A_MAC, dst="52:54:00:0c:00:0b", type=0x88B5)),
            passed("other ethertype", eth(type=0x88B6) / Raw(b"x" * 8)),
            passed("ipv4", udp4()),
        ),
        {"MAC": A_MAC},
    ),
    "vlan": Case(
        ("vlan",),
        drop("<vlan vlanid='42'/>"),
        (
            dropped("vlan 42", eth() / Dot1Q(vlan=42) / ip4() / UDP()),
            passed("vlan 7", eth() / Dot1Q(vlan=7) / ip4() / UDP()),
        ),
    ),
    "stp": Case(
        ("stp",),
        drop("<stp type='0x80'/>"),
        (dropped("topology change", bpdu(0x80)), passed("configuration", bpdu(0))),
    ),
    "arp": Case(
        ("arp", "attr:hwtype", "attr:protocoltype", "attr:opcode"),
        drop("<arp hwtype='1' protocoltype='0x800' opcode='Request'/>"),
        (
            dropped("request", arp(op=1)),
            passed("reply", arp(op=2)),
            passed("hwtype 6", arp(op=1, hwtype=6)),
            passed("protocoltype 0x86dd", arp(op=1, ptype=0x86DD, plen=4)),
        ),
    ),
    "arp-dst-masks": Case(
        ("attr:arpdstipaddr", "attr:arpdstipmask", "attr:arpdstmacaddr", "attr:srcmacmask"),
        drop(
            f"<arp srcmacaddr='52:54:00:00:00:00' srcmacmask='ff:ff:ff:00:00:00' "
            f"arpdstmacaddr='{B_MAC}' arpdstipaddr='192.0.2.0' arpdstipmask='25'/>"
        ),
        (
            dropped("match", arp(hwdst=B_MAC)),
            passed("arp dst ip outside /25", arp(hwdst=B_MAC, pdst="192.0.2.200")),
            passed("other arp dst mac", arp(hwdst="00:00:00:00:00:00")),
            passed("src mac outside the mask", arp(hwdst=B_MAC, ethsrc="02:00:00:00:00:0a")),
        ),
    ),
    "rarp": Case(
        ("rarp",),
        drop("<rarp opcode='3'/>"),
        (
            dropped("request reverse", Ether(src=A_MAC, dst=BCAST, type=0x8035) / ARP(op=3)),
            passed("reply reverse", Ether(src=A_MAC, dst=BCAST, type=0x8035) / ARP(op=4)),
        ),
    ),
    "ip": Case(
        ("ip",),
        drop(f"<ip srcipaddr='$IP' dstipaddr='{B_IP}' protocol='udp' dstportstart='5000'/>"),
        (
            dropped("match", udp4()),
            passed("port 5001", udp4(dport=5001)),
            passed("tcp", eth() / ip4() / TCP(dport=5000)),
            passed("other src", udp4(src=X_IP)),
        ),
        {"IP": A_IP},
    ),
    "ipv6": Case(
        ("ipv6", "attr:type", "attr:typeend", "attr:code", "attr:codeend"),
        drop("<ipv6 protocol='icmpv6' type='128' typeend='129' code='0' codeend='1'/>"),
        (
            dropped("echo request", eth() / ip6() / ICMPv6EchoRequest()),
            dropped("echo reply code 1", eth() / ip6() / ICMPv6EchoReply(code=1)),
            passed("echo request code 2", eth() / ip6() / ICMPv6EchoRequest(code=2)),
            passed("neighbour solicitation", eth() / ip6() / ICMPv6ND_NS(tgt=B_IP6)),
        ),
    ),
    # ---- IPv4
    "tcp": Case(
        ("tcp", "attr:srcportend", "attr:flags", "attr:tcp-srcipaddr", "attr:tcp-dstipaddr"),
        drop(
            f"<tcp srcipaddr='$IP' dstipaddr='{B_IP}' srcportstart='40000' srcportend='40009' "
            "dstportstart='80' flags='SYN,ACK/SYN'/>"
        ),
        (
            dropped("syn", eth() / ip4() / TCP(sport=40005, dport=80, flags="S")),
            passed("source port 40010", eth() / ip4() / TCP(sport=40010, dport=80, flags="S")),
            passed("syn-ack", eth() / ip4() / TCP(sport=40005, dport=80, flags="SA")),
            passed("port 81", eth() / ip4() / TCP(sport=40005, dport=81, flags="S")),
            passed("other dst", eth() / ip4(dst=X_IP) / TCP(sport=40005, dport=80, flags="S")),
            passed("other src", eth() / ip4(src=X_IP) / TCP(sport=40005, dport=80, flags="S")),
        ),
        {"IP": A_IP},
    ),
    "tcp-option": Case(
        ("attr:option",),
        drop("<tcp option='2'/>"),
        (
            dropped("mss", eth() / ip4() / TCP(dport=80, flags="S", options=[("MSS", 1460)])),
            passed("no options", eth() / ip4() / TCP(dport=81, flags="S")),
        ),
    ),
    "udp": Case(
        ("udp", "attr:udp-srcipaddr", "attr:udp-dstipaddr", "attr:dstportend"),
        drop("<udp srcipaddr='$IP' dstipaddr='$PEER[@1]' dstportstart='53' dstportend='54'/>"),
        (
            dropped("to b 53", udp4(dport=53)),
            dropped("to x 54", udp4(dport=54, dst=X_IP)),
            passed("to b 55", udp4(dport=55)),
            passed("to .13", udp4(dport=53, dst="192.0.2.13")),
        ),
        {"IP": A_IP, "PEER": [B_IP, X_IP]},
    ),
    "sctp": Case(
        ("sctp",),
        drop("<sctp dstportstart='9'/>", statematch=NO_SM),
        (
            dropped("port 9", eth() / ip4() / SCTP(sport=1, dport=9)),
            passed("port 10", eth() / ip4() / SCTP(sport=1, dport=10)),
        ),
    ),
    "udplite": Case(
        ("udplite",),
        drop(f"<udplite dstipaddr='{B_IP}'/>", statematch=NO_SM),
        (
            dropped("to b", raw4(136)),
            passed("to x", raw4(136, dst=X_IP)),
            passed("udp", udp4()),
        ),
    ),
    "esp": Case(
        ("esp",),
        drop("<esp srcipaddr='$IP'/>", statematch=NO_SM),
        (dropped("from a", raw4(50)), passed("from x", raw4(50, src=X_IP)), passed("ah", raw4(51))),
        {"IP": A_IP},
    ),
    "ah": Case(
        ("ah",),
        drop(f"<ah dstipaddr='{B_IP}'/>", statematch=NO_SM),
        (dropped("to b", raw4(51)), passed("to x", raw4(51, dst=X_IP)), passed("esp", raw4(50))),
    ),
    "igmp": Case(
        ("igmp",),
        drop("<igmp/>", statematch=NO_SM),
        (dropped("igmp", raw4(2)), passed("udp", udp4())),
    ),
    "icmp": Case(
        ("icmp", "attr:icmp-code"),
        drop("<icmp type='3' code='3'/>"),
        (
            dropped("port unreachable", eth() / ip4() / ICMP(type=3, code=3)),
            passed("host unreachable", eth() / ip4() / ICMP(type=3, code=1)),
            passed("echo request", eth() / ip4() / ICMP(type=8)),
        ),
    ),
    "all": Case(
        ("all", "attr:dscp"),
        drop(f"<all dstipaddr='{B_IP}' dscp='10'/>"),
        (
            dropped("af11 to b", udp4(tos=10 << 2)),
            passed("dscp 0", udp4()),
            passed("af11 to x", udp4(tos=10 << 2, dst=X_IP)),
        ),
    ),
    "ip-ranges": Case(
        ("attr:srcipfrom", "attr:srcipto", "attr:dstipfrom", "attr:dstipto"),
        drop(
            "<udp srcipfrom='192.0.2.10' srcipto='192.0.2.11' "
            "dstipfrom='192.0.2.12' dstipto='192.0.2.20'/>"
        ),
        (
            dropped("a to b", udp4()),
            passed("a to .21", udp4(dst="192.0.2.21")),
            passed(".9 to b", udp4(src="192.0.2.9")),
        ),
    ),
    # ---- IPv6
    "tcp-ipv6": Case(
        ("tcp-ipv6",),
        drop(f"<tcp-ipv6 dstipaddr='{B_IP6}' dstportstart='22' flags='SYN/SYN'/>"),
        (
            dropped("syn 22", eth() / ip6() / TCP(dport=22, flags="S")),
            passed("syn 23", eth() / ip6() / TCP(dport=23, flags="S")),
            passed("ack 22", eth() / ip6() / TCP(dport=22, flags="A")),
        ),
    ),
    "udp-ipv6": Case(
        ("udp-ipv6", "attr:srcportstart"),
        drop(
            "<udp-ipv6 srcipaddr='2001:db8::' srcipmask='64' srcportstart='1000' "
            "srcportend='1009'/>"
        ),
        (
            dropped("sport 1005", udp6(sport=1005)),
            passed("sport 1010", udp6(sport=1010)),
            passed("other prefix", udp6(sport=1005, src=MISS_IP6)),
        ),
    ),
    "sctp-ipv6": Case(
        ("sctp-ipv6",),
        drop("<sctp-ipv6 srcportstart='7'/>", statematch=NO_SM),
        (
            dropped("sport 7", eth() / ip6() / SCTP(sport=7, dport=1)),
            passed("sport 8", eth() / ip6() / SCTP(sport=8, dport=1)),
        ),
    ),
    "udplite-ipv6": Case(
        ("udplite-ipv6",),
        drop(f"<udplite-ipv6 dstipaddr='{B_IP6}'/>", statematch=NO_SM),
        (dropped("to b", raw6(136)), passed("udp", udp6())),
    ),
    "esp-ipv6": Case(
        ("esp-ipv6",),
        drop(f"<esp-ipv6 srcipaddr='{A_IP6}'/>", statematch=NO_SM),
        (dropped("from a", raw6(50)), passed("from x", raw6(50, src=MISS_IP6))),
    ),
    "ah-ipv6": Case(
        ("ah-ipv6",),
        drop("<ah-ipv6/>", statematch=NO_SM),
        (dropped("ah", raw6(51)), passed("esp", raw6(50))),
    ),
    "icmpv6": Case(
        ("icmpv6",),
        drop("<icmpv6 type='128' code='0'/>"),
        (
            dropped("echo request", eth() / ip6() / ICMPv6EchoRequest()),
            passed("echo reply", eth() / ip6() / ICMPv6EchoReply()),
            passed("echo request code 1", eth() / ip6() / ICMPv6EchoRequest(code=1)),
        ),
    ),
    "all-ipv6": Case(
        ("all-ipv6",),
        drop("<all-ipv6 srcipfrom='2001:db8::10' srcipto='2001:db8::11'/>"),
        (dropped("from a", udp6()), passed("from ::14", udp6(src="2001:db8::14"))),
    ),
    # ---- states, reject, variables
    "state-invalid": Case(
        ("feature:INVALID",),
        drop("<tcp state='INVALID'/>"),
        (
            dropped("syn+fin", eth() / ip4() / TCP(sport=40100, dport=80, flags="SF")),
            passed("syn", eth() / ip4() / TCP(sport=40101, dport=80, flags="S")),
        ),
    ),
    "state-related": Case(
        ("feature:RELATED",),
        drop("<icmp state='RELATED'/>"),
        (
            dropped(
                "unreachable for b's flow",
                eth()
                / ip4()
                / ICMP(type=3, code=3)
                / IPerror(src=B_IP, dst=A_IP)
                / UDPerror(sport=40200, dport=7000),
            ),
            passed("echo request", eth() / ip4() / ICMP(type=8, id=77)),
        ),
        before=(passed("b's flow", udp4("b", sport=40200, dport=7000), "b"),),
    ),
    "reject-ipv6": Case(
        ("feature:ipv6-reject",),
        "<rule action='reject' direction='out'><tcp-ipv6 dstportstart='25'/></rule>",
        (
            dropped("syn 25", eth() / ip6() / TCP(sport=40300, dport=25, flags="S")),
            passed("syn 26", eth() / ip6() / TCP(sport=40300, dport=26, flags="S")),
        ),
        reject=lambda rx: _quoted(rx, TCP, 25),
    ),
    "reject-inout": Case(
        ("feature:inout-reject",),
        # inout: the copy for frames from the guest is mirrored (ebiptables-layout.md 4.3)
        "<rule action='reject' direction='inout'><udp dstportstart='53'/></rule>",
        (
            dropped("out from 53", udp4(sport=53)),
            passed("out from 54", udp4(sport=54)),
            dropped("in to 53", udp4("b", dport=53), "b"),
            passed("in to 54", udp4("b", dport=54), "b"),
        ),
        reject=lambda rx: _quoted(rx, UDP, 53),
    ),
    "fallback": Case(
        ("feature:per-port-fallback",),
        drop("<udp match='no' dstipaddr='$PEER'/>"),  # one rule per value: all udp dropped
        (
            dropped("to b", udp4()),
            dropped("to x", udp4(dst=X_IP)),
            passed("tcp to b", eth() / ip4() / TCP(dport=5000)),
        ),
        {"PEER": [B_IP, X_IP]},
    ),
    "iterators": Case(
        ("feature:three-iterators",),
        drop("<udp dstipaddr='$DST[@1]' srcportstart='$SP[@2]' dstportstart='$DP[@3]'/>"),
        (
            *(
                dropped(f"{d} {s} {p}", udp4(sport=s, dport=p, dst=d))
                for d in (B_IP, X_IP)
                for s in (1001, 1002)
                for p in (2001, 2002)
            ),
            passed("sport 1003", udp4(sport=1003, dport=2001)),
            passed("dport 2003", udp4(sport=1001, dport=2003)),
        ),
        {"DST": [B_IP, X_IP], "SP": ["1001", "1002"], "DP": ["2001", "2002"]},
    ),
    # ---- built-ins
    "allow-arp": Case(
        ("builtin:allow-arp",),
        "<filterref filter='allow-arp'/>"
        "<rule action='drop' direction='inout' priority='1000'><mac/></rule>",
        (
            passed("arp out", arp()),
            passed("arp in", arp("b"), "b"),
            dropped("ipv4 out", udp4()),
            dropped("ipv4 in", udp4("b"), "b"),
        ),
    ),
    "allow-ipv4": Case(
        ("builtin:allow-ipv4",),
        "<filterref filter='allow-ipv4'/>"
        "<rule action='drop' direction='inout' priority='1000'><mac/></rule>",
        (
            passed("ipv4 out", udp4()),
            passed("ipv4 in", udp4("b"), "b"),
            dropped("arp out", arp()),
            dropped("ipv6 out", udp6()),
        ),
    ),
    "allow-ipv6": Case(
        ("builtin:allow-ipv6",),
        "<filterref filter='allow-ipv6'/>"
        "<rule action='drop' direction='inout' priority='1000'><mac/></rule>",
        (
            passed("ipv6 out", udp6()),
            passed("ipv6 in", udp6("b"), "b"),
            dropped("ipv4 out", udp4()),
            dropped("ipv4 in", udp4("b"), "b"),
        ),
    ),
    "allow-dhcpv6-server": Case(
        ("builtin:allow-dhcpv6-server",),
        "<filterref filter='allow-dhcpv6-server'/>"
        "<rule action='drop' direction='inout' priority='1000'><ipv6/></rule>",
        (
            passed(
                "solicit",
                Ether(src=A_MAC, dst="33:33:00:01:00:02")
                / IPv6(src=LL_A, dst="ff02::1:2")
                / UDP(sport=546, dport=547),
            ),
            dropped(
                "solicit to 548",
                Ether(src=A_MAC, dst="33:33:00:01:00:02")
                / IPv6(src=LL_A, dst="ff02::1:2")
                / UDP(sport=546, dport=548),
            ),
            passed(
                "advertise",
                eth("b") / IPv6(src=DHCP_SERVER, dst=LL_A) / UDP(sport=547, dport=546),
                "b",
            ),
            dropped(
                "advertise from another server",
                eth("b") / IPv6(src="fe80::99", dst=LL_A) / UDP(sport=547, dport=546),
                "b",
            ),
        ),
        {"DHCPSERVER": DHCP_SERVER},
    ),
    "no-ipv6-multicast": Case(
        ("builtin:no-ipv6-multicast",),
        "<filterref filter='no-ipv6-multicast'/>",
        (
            dropped(
                "to ff02::1",
                Ether(src=A_MAC, dst="33:33:00:00:00:01") / ip6(dst="ff02::1") / UDP(dport=5000),
            ),
            passed("to b", udp6()),
        ),
    ),
}

# what the issue lists beyond the protocol rows
REQUIRED = {
    *(f"attr:{a}" for a in ("srcmacmask", "dstmacmask", "srcipfrom", "srcipto", "dstipfrom")),
    *(f"attr:{a}" for a in ("dstipto", "dscp", "flags", "option", "srcportend", "icmp-code")),
    *(f"attr:{a}" for a in ("type", "typeend", "code", "codeend", "hwtype", "protocoltype")),
    *(f"attr:{a}" for a in ("opcode", "arpdstipaddr", "arpdstipmask", "arpdstmacaddr")),
    *(f"attr:{a}" for a in ("tcp-srcipaddr", "tcp-dstipaddr", "udp-srcipaddr", "udp-dstipaddr")),
    *(f"feature:{f}" for f in ("RELATED", "INVALID", "ipv6-reject", "inout-reject")),
    *(f"feature:{f}" for f in ("per-port-fallback", "three-iterators")),
    *(f"builtin:{b}" for b in ("allow-arp", "allow-ipv4", "allow-ipv6")),
    *(f"builtin:{b}" for b in ("allow-dhcpv6-server", "no-ipv6-multicast")),
}


def test_every_protocol_row_has_a_kernel_case() -> None:
    covered = {c for case in CASES.values() for c in case.covers}
    assert set(P.PROTOCOLS) - covered == set()
    assert REQUIRED - covered == set()


@pytest.mark.parametrize("name", list(CASES))
def test_case_has_a_pass_and_a_drop(name: str) -> None:
    assert {f.passes for f in CASES[name].frames} == {True, False}


def _send(lab: Lab, guests: dict[str, Any], frames: tuple[F, ...], name: str) -> dict[str, bool]:
    got: dict[str, bool] = {}
    for sender in ("a", "b"):
        batch = {
            f.label: f.packet / Raw(f"nwguard-row {name} {f.label}".encode())
            for f in frames
            if f.sender == sender
        }
        if batch:
            src, dst = guests[sender], guests["b" if sender == "a" else "a"]
            got |= deliveries(lab, src, batch, dst, timeout=0.5, promisc=True)
    return got


# known differences between the backends, each failing here until fixed (strict xfail)
KNOWN = {
    (
        "iptables",
        "stp",
    ): "ebt_stp reads the BPDU's version byte as its type: --stp-type tcn never matches",
}


@pytest.mark.parametrize("name", list(CASES))
def test_protocol_row_in_the_kernel(
    lab: Lab, tmp_path: Path, firewall_backend: str, name: str, request: pytest.FixtureRequest
) -> None:
    if (firewall_backend, name) in KNOWN:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN[firewall_backend, name]))
    case = CASES[name]
    a, b = _guests(lab)
    lab.sysctl(
        lab.host_ns,
        {"net.bridge.bridge-nf-call-iptables": 1, "net.bridge.bridge-nf-call-ip6tables": 1},
    )
    ng = Nwguard(lab, tmp_path)
    ng.define(f"<filter name='top' chain='root'>{case.body}</filter>")
    ng.bind(a, "top", **case.params)
    guests = {"a": a, "b": b}
    if case.before:
        assert all(_send(lab, guests, case.before, name).values())
    if case.reject is not None:
        senders = {f.sender for f in case.frames if not f.passes}
        sniffers = {s: lab.sniffer(guests[s]) for s in senders}
        got = _send(lab, guests, case.frames, name)
        for s, sn in sniffers.items():
            with sn:
                assert sn.wait_for(case.reject, timeout=1.0) is not None, f"no reject to {s}"
    else:
        got = _send(lab, guests, case.frames, name)
    expected = {f.label: f.passes for f in case.frames}
    assert got == expected
