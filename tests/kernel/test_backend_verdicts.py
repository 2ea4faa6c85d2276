"""Both backends give the same verdicts, frame by frame.

For each filter of the golden cases, guest ``a`` is bound to it on nftables and a battery of
frames goes from ``a`` to its peer ``b`` and back; then the same on iptables/ebtables (same
guests, same addresses, the binding made anew). What arrived must be the same, frame for
frame. Each run uses its own port numbers, so the connection tracking of the first run does
not decide the second one's verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from .lab import Lab, Node
from .nwg import Nwguard, deliveries
from .test_ebiptables_layout import CASES

pytestmark = pytest.mark.kernel

BCAST = "ff:ff:ff:ff:ff:ff"
FOREIGN_MAC, FOREIGN_IP = "52:54:00:de:ad:04", "192.0.2.250"
A6, B6, LL6 = "2001:db8::5", "2001:db8::6", "fe80::5054:ff:fe12:3456"


def tag(name: str) -> Raw:
    return Raw(f"NWG {name}".encode())


def from_guest(a: Node, b: Node, base: int) -> dict[str, Any]:
    eth, ip = Ether(src=a.mac, dst=b.mac), IP(src=a.ip, dst=b.ip)
    frames = {
        "udp": eth / ip / UDP(sport=base, dport=5000),
        "udp 53": eth / ip / UDP(sport=base + 1, dport=53),
        "udp 123": eth / ip / UDP(sport=base + 2, dport=123),
        **{f"tcp {p}": eth / ip / TCP(sport=base + 3, dport=p, flags="S") for p in (22, 25, 443)},
        "tcp 80": eth / ip / TCP(sport=base + 4, dport=80, flags="S"),
        "ping": eth / ip / ICMP(id=base),
        "spoofed ip": eth / IP(src=FOREIGN_IP, dst=b.ip) / UDP(sport=base, dport=5000),
        "spoofed mac": Ether(src=FOREIGN_MAC, dst=b.mac) / ip / UDP(sport=base, dport=5000),
        "arp": Ether(src=a.mac, dst=BCAST) / ARP(hwsrc=a.mac, psrc=a.ip, pdst=b.ip),
        "arp spoofed": Ether(src=a.mac, dst=BCAST) / ARP(hwsrc=a.mac, psrc=FOREIGN_IP, pdst=b.ip),
        "rarp announce": Ether(src=a.mac, dst=BCAST, type=0x8035)
        / ARP(op=3, hwsrc=a.mac, hwdst=a.mac, psrc="0.0.0.0", pdst="0.0.0.0"),
        "dhcp discover": Ether(src=a.mac, dst=BCAST)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67),
        "ipv6 udp": eth / IPv6(src=A6, dst=B6) / UDP(sport=base, dport=5000),
        "ipv6 spoofed": eth / IPv6(src="2001:db9::1", dst=B6) / UDP(sport=base, dport=5000),
        "ipv6 ping": eth / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=base),
        "ipv6 ns": eth / IPv6(src=LL6, dst="ff02::1:ff00:6") / ICMPv6ND_NS(tgt=B6),
        "other ethertype": Ether(src=a.mac, dst=b.mac, type=0x88B5),
        "vlan 42": eth / Dot1Q(vlan=42) / ip / UDP(sport=base, dport=5000),
        "vlan 7": eth / Dot1Q(vlan=7) / ip / UDP(sport=base, dport=5000),
    }
    return {k: f / tag(k) for k, f in frames.items()}


def to_guest(a: Node, b: Node, base: int) -> dict[str, Any]:
    eth, ip = Ether(src=b.mac, dst=a.mac), IP(src=b.ip, dst=a.ip)
    frames = {
        "udp": eth / ip / UDP(sport=base, dport=5000),
        **{f"tcp {p}": eth / ip / TCP(sport=base + 1, dport=p, flags="S") for p in (22, 80, 8080)},
        "tcp from 443": eth / ip / TCP(sport=443, dport=base, flags="SA"),
        "ping": eth / ip / ICMP(id=base),
        "arp": Ether(src=b.mac, dst=a.mac) / ARP(op=2, hwsrc=b.mac, psrc=b.ip, pdst=a.ip),
        "ipv6 udp": eth / IPv6(src=B6, dst=A6) / UDP(sport=base, dport=5000),
        "ipv6 ssh": eth / IPv6(src=B6, dst=A6) / TCP(sport=base, dport=22, flags="S"),
        "ipv6 ping": eth / IPv6(src=B6, dst=A6) / ICMPv6EchoRequest(id=base),
        "other ethertype": Ether(src=b.mac, dst=a.mac, type=0x88B5),
    }
    return {k: f / tag(k) for k, f in frames.items()}


def params(name: str, a: Node, b: Node) -> dict[str, Any]:
    values = {"MAC": a.mac, "IP": a.ip, "IPV6": [A6, LL6], "WEB": [b.ip, "192.0.2.249"]}
    values["VLAN"] = "42"
    return {k: values[k] for k in CASES[name].params}


def battery(lab: Lab, ng: Nwguard, name: str, a: Node, b: Node, base: int) -> dict[str, bool]:
    case = CASES[name]
    for doc in case.docs:
        ng.define(doc)
    ng.bind(a, case.top, **params(name, a, b))
    out = {f"out {k}": v for k, v in deliveries(lab, a, from_guest(a, b, base), b).items()}
    out |= {f"in {k}": v for k, v in deliveries(lab, b, to_guest(a, b, base), a).items()}
    ng.unbind(a)
    assert a.port not in str(ng.kernel())  # nothing of it is left for the other backend
    return out


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if not c.batch))
def test_both_backends_deliver_the_same_frames(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    lab.bridge(ip="192.0.2.1/24")
    a, b = lab.guest("a"), lab.guest("b")
    verdicts = {}
    for i, backend in enumerate(("nftables", "iptables")):
        monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", backend)
        ng = Nwguard(lab, tmp_path / backend)
        verdicts[backend] = battery(lab, ng, name, a, b, base=41000 + 100 * i)
    nft, ipt = verdicts["nftables"], verdicts["iptables"]
    assert set(nft.values()) == {True, False}  # control: the filter passes some, drops some
    differ = {k: (nft[k], ipt[k]) for k in nft if nft[k] != ipt[k]}
    assert not differ, f"(nftables, iptables) delivered: {differ}"
