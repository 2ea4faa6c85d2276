"""Redefining a filter that bound ports use: one transaction, no unfiltered window, and a
refused change leaves the old rules, the old definition and an error that says why.

The window test binds many guests to a filter built on ``clean-traffic``, keeps one guest
sending spoofed frames (that every version of the filter drops) and legitimate ones, and
redefines the filter back and forth meanwhile; the receiving guest must never see a single
spoofed frame, and must keep seeing the legitimate ones.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from . import pktsend
from .lab import Lab, Node
from .nwg import Nwguard, deliveries

pytestmark = pytest.mark.kernel

FOREIGN_MAC = "52:54:00:de:ad:03"
FOREIGN_IP = "192.0.2.251"
GUESTS = 20
REDEFINITIONS = 8


def guard(version: int, extra: str = "") -> str:
    """The filter under test: clean-traffic plus rules that differ between versions.

    Both versions drop every spoofed frame the test sends; they differ in a root-chain
    Ethernet rule and in an L4 rule, so a redefinition replaces chains on both layers.
    """
    ethertype = "0x88b6" if version % 2 else "0x88b7"
    port = 25 if version % 2 else 587
    return (
        "<filter name='guard' chain='root'>"
        "<filterref filter='clean-traffic'/>"
        f"<rule action='drop' direction='out' priority='-900'><mac protocolid='{ethertype}'/></rule>"
        f"<rule action='drop' direction='out'><tcp dstportstart='{port}'/></rule>"
        f"{extra}</filter>"
    )


def spoofed(a: Node, b: Node) -> dict[str, bytes]:
    tag = b"NWG-SPOOF "
    return {
        "ip": bytes(Ether(src=a.mac, dst=b.mac) / IP(src=FOREIGN_IP, dst=b.ip)
                    / UDP(sport=40000, dport=9) / Raw(tag + b"ip")),
        "mac": bytes(Ether(src=FOREIGN_MAC, dst=b.mac) / IP(src=a.ip, dst=b.ip)
                     / UDP(sport=40000, dport=9) / Raw(tag + b"mac")),
        "arp": bytes(Ether(src=a.mac, dst=b.mac) / ARP(op=2, hwsrc=a.mac, psrc=FOREIGN_IP,
                                                      hwdst=b.mac, pdst=b.ip) / Raw(tag + b"arp")),
        "ipv6": bytes(Ether(src=a.mac, dst=b.mac) / IPv6(src="fe80::1", dst="fe80::2")
                      / UDP(sport=40000, dport=9) / Raw(tag + b"ipv6")),
    }  # fmt: skip


def legit(a: Node, b: Node) -> bytes:
    return bytes(
        Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / UDP(sport=40000, dport=9)
        / Raw(b"NWG-LEGIT")
    )  # fmt: skip


# ------------------------------------------------------------------------------ in the guests


def _flood(iface: str, frames: dict[str, bytes], stop: str, limit: float) -> Counter:
    """Send every frame in turn until ``stop`` exists (or ``limit`` s); count what was sent."""
    sent: Counter = Counter()
    end = time.monotonic() + limit
    with pktsend.send_socket(iface) as sock:
        rounds = 0
        while time.monotonic() < end:
            for name, frame in frames.items():
                sock.send(frame)
                sent[name] += 1
            rounds += 1
            if rounds % 20 == 0:
                if os.path.exists(stop):
                    break
                time.sleep(0.002)
    return sent


def _count(iface: str, ready: str, stop: str, limit: float) -> Counter:
    """Count arriving frames by their tag until ``stop`` exists and the queue is drained."""
    got: Counter = Counter()
    with pktsend.packet_socket(iface) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        Path(ready).touch()
        end = time.monotonic() + limit
        stopping_at = None
        while time.monotonic() < end:
            if stopping_at is None and os.path.exists(stop):
                stopping_at = time.monotonic() + 0.3  # frames still in flight
            if stopping_at is not None and time.monotonic() > stopping_at:
                break
            frame = pktsend.recv_frame(sock, 0.05)
            if frame is None or frame[1] == pktsend.PACKET_OUTGOING:
                continue  # (b's own ICMP errors quote the frames it got)
            data = frame[0]
            if b"NWG-SPOOF " in data:
                got["spoof " + data.split(b"NWG-SPOOF ")[1][:4].rstrip(b"\0").decode()] += 1
            elif b"NWG-LEGIT" in data:
                got["legit"] += 1
    return got


def _wait_for(path: Path, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)


# ------------------------------------------------------------------------------ tests


@pytest.fixture
def ng(lab: Lab, tmp_path, firewall_backend) -> Nwguard:
    return Nwguard(lab, tmp_path)


def rules_in_force(ng: Nwguard) -> object:
    """The chains nwguard has in the kernel (on iptables, the whole listing: chain names
    are the ports', their contents change)."""
    return ng.census().chains if ng.backend == "nftables" else ng.kernel()


def test_redefining_a_filter_of_many_ports_under_traffic_never_lets_a_spoofed_frame_through(
    lab, ng, tmp_path
):
    guests = [lab.guest(f"g{i}") for i in range(GUESTS)]
    a, b = guests[0], guests[1]
    ng.define(guard(1))
    for g in guests:
        ng.bind(g, "guard", IP=g.ip)
    frames = {**spoofed(a, b), "legit": legit(a, b)}
    # the filter is in force before the traffic starts
    assert deliveries(lab, a, {"legit": frames["legit"], "ip": frames["ip"]}, b) == {
        "legit": True, "ip": False,
    }  # fmt: skip

    ready, stop = tmp_path / "ready", tmp_path / "stop"
    receiver = lab.start_in(b, _count, b.iface, str(ready), str(stop), 60.0)
    _wait_for(ready)
    sender = lab.start_in(a, _flood, a.iface, frames, str(stop), 60.0)
    time.sleep(0.2)  # traffic flows under version 1
    chains, took = [rules_in_force(ng)], []
    for version in range(2, 2 + REDEFINITIONS):
        t0 = time.monotonic()
        ng.define(guard(version))
        took.append(time.monotonic() - t0)
        chains.append(rules_in_force(ng))
        time.sleep(0.05)
    stop.touch()
    sent, got = sender.result(30), receiver.result(30)

    assert all(chains[i] != chains[i + 1] for i in range(REDEFINITIONS)), "nothing was rebuilt"
    assert sum(sent[k] for k in spoofed(a, b)) > 1000, sent
    assert not {k: n for k, n in got.items() if k.startswith("spoof")}, (got, sent)
    # legitimate traffic kept flowing through every rebuild (none may go missing at all)
    assert got["legit"] == sent["legit"], (got, sent)
    assert max(took) < 2.0, took


def test_a_redefinition_referencing_a_missing_filter_is_refused_and_changes_nothing(lab, ng):
    a, b = lab.guest("a"), lab.guest("b")
    ng.define(guard(1))
    ng.bind(a, "guard", IP=a.ip)
    before_xml, before = ng.dumpxml("guard"), ng.kernel()
    kind, message = ng.refusal("nwfilter_define", guard(2, "<filterref filter='no-such-filter'/>"))
    assert kind == "InUseError" and "no-such-filter" in message, (kind, message)
    assert_unchanged(lab, ng, a, b, before_xml, before)


def test_a_redefinition_needing_a_variable_a_port_lacks_is_refused_and_changes_nothing(lab, ng):
    a, b = lab.guest("a"), lab.guest("b")
    ng.define(guard(1))
    ng.bind(a, "guard", IP=a.ip)
    before_xml, before = ng.dumpxml("guard"), ng.kernel()
    extra = "<rule action='accept' direction='out'><ip dstipaddr='$GATEWAY'/></rule>"
    kind, message = ng.refusal("nwfilter_define", guard(2, extra))
    assert kind == "InUseError" and "GATEWAY" in message and a.port in message, (kind, message)
    assert_unchanged(lab, ng, a, b, before_xml, before)


def test_a_redefinition_that_cannot_be_compiled_is_refused_and_changes_nothing(lab, ng):
    a, b = lab.guest("a"), lab.guest("b")
    ng.define(guard(1))
    ng.bind(a, "guard", IP=a.ip)
    before_xml, before = ng.dumpxml("guard"), ng.kernel()
    # nftables cannot compare two fields (the iptables backend can: --arp-gratuitous): bound
    # ports refuse it when rebuilt; STP by source MAC in both directions no backend can
    # filter, so define refuses it before any port is rebuilt (the parser's located error)
    extra, want_kind, word = {
        "nftables": ("<rule action='drop' direction='out'><arp gratuitous='true'/></rule>",
                     "CompileError", "gratuitous"),
        "iptables": (f"<rule action='drop' direction='inout'><stp srcmacaddr='{a.mac}'/></rule>",
                     "XMLError", "STP filtering"),
    }[ng.backend]  # fmt: skip
    kind, message = ng.refusal("nwfilter_define", guard(2, extra))
    assert kind == want_kind and word in message, (kind, message)
    assert_unchanged(lab, ng, a, b, before_xml, before)


def test_an_undefined_filter_in_use_is_refused_and_keeps_filtering(lab, ng):
    a, b = lab.guest("a"), lab.guest("b")
    ng.define(guard(1))
    ng.bind(a, "guard", IP=a.ip)
    before_xml, before = ng.dumpxml("guard"), ng.kernel()
    kind, message = ng.refusal("nwfilter_undefine", "guard")
    assert kind == "InUseError" and "guard" in message, (kind, message)
    assert_unchanged(lab, ng, a, b, before_xml, before)


def assert_unchanged(lab: Lab, ng: Nwguard, a: Node, b: Node, xml: str, table: object) -> None:
    assert ng.dumpxml("guard") == xml  # the definition was not saved
    assert a.port in str(table)  # (control: the listing holds the port's rules)
    assert ng.kernel() == table  # the kernel was not touched
    frames = {**spoofed(a, b), "legit": legit(a, b)}
    got = deliveries(lab, a, frames, b)
    assert got == {"ip": False, "mac": False, "arp": False, "ipv6": False, "legit": True}
