"""Bulk binding in a real kernel: many ports in one transaction, all or nothing (issue 13).

Each guest sends a frame from its own address (a pass control) and one from a foreign source
IP, which ``clean-traffic`` drops once the guest's port is bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from .lab import Lab, Node
from .nwg import Nwguard, binding_xml, deliveries

pytestmark = pytest.mark.kernel

FOREIGN_IP = "192.0.2.250"


@pytest.fixture
def ng(lab: Lab, tmp_path: Path) -> Nwguard:
    return Nwguard(lab, tmp_path)


def frames(src: Node, dst: Node) -> dict[str, Ether]:
    def udp(ip: str, tag: str) -> Ether:
        return (
            Ether(src=src.mac, dst=dst.mac) / IP(src=ip, dst=dst.ip) / UDP(sport=40000, dport=9)
            / Raw(f"nwguard-bulk {src.port} {tag}".encode())
        )  # fmt: skip

    return {"own": udp(src.ip, "own"), "spoofed": udp(FOREIGN_IP, "spoofed")}


def filtered(lab: Lab, src: Node, dst: Node) -> dict[str, bool]:
    return deliveries(lab, src, frames(src, dst), dst)


BOUND = {"own": True, "spoofed": False}
OPEN = {"own": True, "spoofed": True}


def test_many_ports_are_bound_and_unbound_at_once(lab: Lab, ng: Nwguard) -> None:
    guests = [lab.guest(n) for n in ("a", "b", "c")]
    sink = lab.guest("z")
    xmls = [binding_xml(g.port, g.mac, "clean-traffic", IP=g.ip) for g in guests]
    ng.call("nwfilter_binding_create_many", xmls)
    assert ng.census().ports == {g.port for g in guests}
    for g in guests:
        assert filtered(lab, g, sink) == BOUND, g.port
    a, b, c = guests
    ng.call("nwfilter_binding_delete_many", [a.port, b.port])
    assert sorted(p for p, _ in ng.bindings()) == [c.port]
    assert ng.census().ports == {c.port}
    assert filtered(lab, a, sink) == OPEN and filtered(lab, b, sink) == OPEN
    assert filtered(lab, c, sink) == BOUND


def test_a_bulk_bind_with_one_missing_port_binds_none(lab: Lab, ng: Nwguard) -> None:
    a, b, sink = lab.guest("a"), lab.guest("b"), lab.guest("z")
    ng.bind(b, "clean-traffic", IP=b.ip)
    xmls = [
        binding_xml(a.port, a.mac, "clean-traffic", IP=a.ip),
        binding_xml("nwgnosuch0", a.mac, "clean-traffic", IP=a.ip),
    ]
    cls, msg = ng.refusal("nwfilter_binding_create_many", xmls)
    assert cls == "NotFoundError" and "nwgnosuch0" in msg
    assert [p for p, _ in ng.bindings()] == [b.port] and ng.census().ports == {b.port}
    assert filtered(lab, a, sink) == OPEN  # nothing of the refused call is in force
    assert filtered(lab, b, sink) == BOUND
