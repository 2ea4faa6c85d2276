"""Counters in the kernel: per port, accepted and dropped move by exactly the frames sent, and
each drop is counted on the rule that made it (issue 12).

Two guests bound to ``clean-traffic``; IPv6 is off in every namespace so that no neighbour
discovery or MLD frame adds to what the test sends. Frames from ``a`` to ``b``: valid ones
(the pass control: ``b`` receives them) and ones with a forged source MAC or IP (dropped).
They are addressed to no address of ``b``'s, so that ``b`` answers nothing (an ICMP error would
make it ask for ``a``'s MAC, and ``a`` would answer).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from .lab import Lab, Node
from .nwg import Nwguard, deliveries

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")
FOREIGN_MAC = "52:54:00:de:ad:07"
FOREIGN_IP = "192.0.2.250"
NOBODY_IP = "192.0.2.249"  # to b's MAC but no address of b's: b drops it without a reply
NO_V6 = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}


def frames(a: Node, b: Node) -> dict[str, bytes]:
    def udp(src_mac: str, src_ip: str, tag: str) -> bytes:
        return bytes(Ether(src=src_mac, dst=b.mac) / IP(src=src_ip, dst=NOBODY_IP)
                     / UDP(sport=40000, dport=9) / Raw(b"NWG-COUNT " + tag.encode() * 4))  # fmt: skip

    out = {f"ok{i}": udp(a.mac, a.ip, f"ok{i}") for i in range(5)}
    out |= {f"ip{i}": udp(a.mac, FOREIGN_IP, f"ip{i}") for i in range(3)}
    out |= {f"mac{i}": udp(FOREIGN_MAC, a.ip, f"mac{i}") for i in range(2)}
    return out


def quiet_lab(lab: Lab) -> tuple[Node, Node]:
    lab.host()
    lab.sysctl(lab.host_ns, NO_V6)
    # no IGMP report of the bridge's own (multicast router discovery, at a random time)
    br = lab.bridge(mcast_snooping=False)
    a, b = lab.guest("a", bridge=br), lab.guest("b", bridge=br)
    for g in (a, b):
        lab.sysctl(g, NO_V6)
        # no ARP either: a neighbour lookup in the middle of the test is a frame it did not send
        lab.run(g.ns, "ip", "link", "set", "dev", g.iface, "arp", "off")
    # nor the bridge's IGMP report for multicast router discovery (224.0.0.106), which it
    # sends at a random time after it came up when it snoops multicast
    lab.run(
        lab.host_ns, "ip", "link", "set", "dev", a.bridge, "type", "bridge", "mcast_snooping", "0"
    )
    return a, b


def settled(nwg: Nwguard, a, b, quiet: float = 0.5, limit: float = 10.0):  # type: ignore[no-untyped-def]
    """The two ports' stats once they stopped moving for ``quiet`` seconds (a loaded machine
    may still deliver what the links sent when they came up)."""
    deadline = time.monotonic() + limit
    last = None
    while True:
        now = tuple(nwg.call("nwfilter_binding_stats", g.port) for g in (a, b))
        key = tuple((s.sent, s.received) for s in now)
        if key == last or time.monotonic() > deadline:
            return now
        last = key
        time.sleep(quiet)


def test_counters_move_by_exactly_the_frames_sent(lab: Lab, tmp_path: Path) -> None:
    a, b = quiet_lab(lab)
    nwg = Nwguard(lab, tmp_path)
    for g in (a, b):
        nwg.bind(g, "clean-traffic", IP=g.ip)
    a0, b0 = settled(nwg, a, b)  # what the links sent when they came up has passed

    sent = frames(a, b)
    got = deliveries(lab, a, sent, b)
    assert {n for n, ok in got.items() if ok} == {f"ok{i}" for i in range(5)}  # pass control

    a1, b1 = (nwg.call("nwfilter_binding_stats", g.port) for g in (a, b))
    size = {n: len(f) for n, f in sent.items()}  # frame bytes, as the interfaces count them
    ok_bytes = sum(v for n, v in size.items() if n.startswith("ok"))
    bad_bytes = sum(v for n, v in size.items() if not n.startswith("ok"))
    assert a1.sent.accepted.packets - a0.sent.accepted.packets == 5
    assert a1.sent.accepted.bytes - a0.sent.accepted.bytes == ok_bytes
    assert a1.sent.dropped.packets - a0.sent.dropped.packets == 5
    assert a1.sent.dropped.bytes - a0.sent.dropped.bytes == bad_bytes
    assert b1.received.accepted.packets - b0.received.accepted.packets == 5
    assert b1.received.accepted.bytes - b0.received.accepted.bytes == ok_bytes
    assert b1.received.dropped.packets == b0.received.dropped.packets == 0

    def by_filter(s) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in s.rules:
            out[r.filter] = out.get(r.filter, 0) + r.packets
        return out

    before, after = by_filter(a0), by_filter(a1)
    moved = {f: n - before.get(f, 0) for f, n in after.items() if n != before.get(f, 0)}
    assert moved == {"no-mac-spoofing": 2, "no-ip-spoofing": 3}
    mac_rule = next(r for r in a1.rules if r.filter == "no-mac-spoofing")
    assert mac_rule.side == "out" and mac_rule.action == "drop"
    assert mac_rule.path == ("clean-traffic", "no-mac-spoofing") and mac_rule.line

    # the command shows the same counters (nothing was sent since)
    out = lab.run(lab.host_ns, NWGUARD, "--config-dir", nwg.config, "--state-dir", nwg.state,
                  "nwfilter-binding-stats", a.port, "--json")  # fmt: skip
    data = json.loads(out.stdout)
    assert data["sent"]["dropped"]["packets"] == a1.sent.dropped.packets
    assert data["sent"]["accepted"]["packets"] == a1.sent.accepted.packets
    assert {r["filter"] for r in data["rules"]} >= {"no-mac-spoofing", "no-ip-spoofing"}


def _bind_with_tiny_counter_sets(config: str, state: str, bindings: list[str]) -> None:
    """Bind in a process whose counter sets hold one element (the fork's own module)."""
    from nwguard.api import Client
    from nwguard.backends.nft import layout

    layout.COUNTER_SET_SIZE = 1
    c = Client.open(config_dir=config, state_dir=state)
    for xml in bindings:
        c.nwfilter_binding_create(xml)
    c.nwfilter_reapply()  # a full batch: the tables made anew with the tiny sets


def test_a_full_counter_set_stops_the_counting_never_a_drop(lab: Lab, tmp_path: Path) -> None:
    """The counting rule is apart from the drop rule: when ``drops`` is full its update fails
    and ends only the counting rule; the forged frames are still dropped, valid ones pass."""
    from .nwg import binding_xml

    a, b = quiet_lab(lab)
    nwg = Nwguard(lab, tmp_path)
    xmls = [binding_xml(g.port, g.mac, "clean-traffic", IP=g.ip) for g in (a, b)]
    lab.call_in(lab.host_ns, _bind_with_tiny_counter_sets, nwg.config, nwg.state, xmls)
    sent = frames(a, b)
    got = deliveries(lab, a, sent, b)
    assert {n for n, ok in got.items() if ok} == {f"ok{i}" for i in range(5)}
    s = nwg.call("nwfilter_binding_stats", a.port)
    # the forged IPs come first (frames()): their rule's element fills the set and counts on
    # (an existing element is updated); the forged MACs' element cannot be added
    assert [(r.filter, r.packets) for r in s.rules] == [("no-ip-spoofing", 3)]
