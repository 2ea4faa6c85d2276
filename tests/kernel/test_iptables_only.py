"""What libvirt's filters say and only the iptables backend can enforce, with real frames.

``ipset``/``ipsetflags`` (``-m set --match-set``), ``connlimit-above`` (``-m connlimit``) and
``arp gratuitous='true'`` (ebtables ``--arp-gratuitous``): each test binds a filter on the
iptables backend and sends frames that must be dropped beside frames that must pass. On
nftables the same binding is refused by name and leaves the kernel as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from .lab import Lab
from .nwg import Nwguard, binding_xml, deliveries

pytestmark = pytest.mark.kernel

BCAST = "ff:ff:ff:ff:ff:ff"
SET = "nwgt-blocked"


def one_rule(name: str, rule: str) -> str:
    return f"<filter name='{name}' chain='root'>{rule}</filter>"


@pytest.fixture
def ipt(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Nwguard:
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "iptables")
    lab.bridge(ip="192.0.2.1/24")
    return Nwguard(lab, tmp_path)


@pytest.fixture
def blocked(lab: Lab) -> Iterator[str]:
    """An ipset of (address, port) pairs in the host namespace, destroyed afterwards."""
    lab.run(lab.host_ns, "ipset", "create", SET, "hash:ip,port")
    try:
        yield SET
    finally:
        lab.run(lab.host_ns, "ipset", "destroy", SET, check=False)


def test_gratuitous_arp_is_dropped_and_other_arp_passes(lab: Lab, ipt: Nwguard) -> None:
    a, b = lab.guest("a"), lab.guest("b")
    ipt.define(
        one_rule("no-garp", "<rule action='drop' direction='out'><arp gratuitous='true'/></rule>")
    )
    ipt.bind(a, "no-garp")
    frames = {
        "gratuitous": Ether(src=a.mac, dst=BCAST) / ARP(hwsrc=a.mac, psrc=a.ip, pdst=a.ip),
        "request": Ether(src=a.mac, dst=BCAST) / ARP(hwsrc=a.mac, psrc=a.ip, pdst=b.ip),
    }
    assert deliveries(lab, a, frames, b) == {"gratuitous": False, "request": True}


def test_ipset_match_drops_the_pairs_in_the_set_only(lab: Lab, ipt: Nwguard, blocked: str) -> None:
    a, b = lab.guest("a"), lab.guest("b")
    lab.run(lab.host_ns, "ipset", "add", blocked, f"{b.ip},udp:5001")
    ipt.define(
        one_rule(
            "no-blocked",
            f"<rule action='drop' direction='out'><all ipset='{blocked}' ipsetflags='dst,dst'/></rule>",
        )
    )
    ipt.bind(a, "no-blocked")
    eth, ip = Ether(src=a.mac, dst=b.mac), IP(src=a.ip, dst=b.ip)
    frames = {
        "in the set": eth / ip / UDP(sport=40000, dport=5001) / Raw(b"NWG 1"),
        "other port": eth / ip / UDP(sport=40000, dport=5000) / Raw(b"NWG 2"),
    }
    assert deliveries(lab, a, frames, b) == {"in the set": False, "other port": True}
    # the set is read when a packet comes: a pair added now is dropped at once
    lab.run(lab.host_ns, "ipset", "add", blocked, f"{b.ip},udp:5000")
    later = {"other port now in the set": frames["other port"] / Raw(b"x")}
    assert deliveries(lab, a, later, b) == {"other port now in the set": False}


def test_connlimit_drops_connections_above_the_limit(lab: Lab, ipt: Nwguard) -> None:
    a, b = lab.guest("a"), lab.guest("b")
    ipt.define(
        one_rule(
            "two-conns",
            "<rule action='drop' direction='out'>"
            "<tcp dstportstart='80' connlimit-above='2'/></rule>",
        )
    )
    ipt.bind(a, "two-conns")
    # b answers nothing: no RST closes the tracked connections (the frames still reach it)
    lab.run(b, "iptables", "-A", "INPUT", "-p", "tcp", "-j", "DROP")
    eth, ip = Ether(src=a.mac, dst=b.mac), IP(src=a.ip, dst=b.ip)
    got = {}
    for i in range(4):  # one at a time: the count is of connections already tracked
        syn = {f"syn {i}": eth / ip / TCP(sport=42000 + i, dport=80, flags="S")}
        got |= deliveries(lab, a, syn, b)
    other = {"port 81": eth / ip / TCP(sport=42010, dport=81, flags="S")}
    got |= deliveries(lab, a, other, b)
    assert got == {"syn 0": True, "syn 1": True, "syn 2": False, "syn 3": False, "port 81": True}


@pytest.mark.parametrize(
    ("rule", "word"),
    [
        ("<arp gratuitous='true'/>", "gratuitous"),
        ("<tcp connlimit-above='2'/>", "connlimit-above"),
        (f"<all ipset='{SET}' ipsetflags='dst'/>", "ipset"),
    ],
)
def test_nftables_refuses_them_by_name_and_changes_nothing(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule: str, word: str
) -> None:
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "nftables")
    lab.bridge(ip="192.0.2.1/24")
    a, b = lab.guest("a"), lab.guest("b")
    ng = Nwguard(lab, tmp_path)
    ng.define(one_rule("only-ipt", f"<rule action='drop' direction='out'>{rule}</rule>"))
    before = ng.kernel()
    kind, message = ng.refusal("nwfilter_binding_create", binding_xml(a.port, a.mac, "only-ipt"))
    assert kind == "CompileError" and word in message and "nftables" in message, message
    assert ng.kernel() == before and ng.bindings() == []
    # control: the same port binds on nftables with a filter it can express
    ng.define(one_rule("fine", "<rule action='drop' direction='out'><arp/></rule>"))
    ng.bind(a, "fine")
    assert a.port in str(ng.kernel())
    assert b.port not in str(ng.kernel())
