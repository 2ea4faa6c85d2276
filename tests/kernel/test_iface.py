"""iface-attach/-detach: libvirt <interface> XML → port on the bridge + its filter binding."""

from __future__ import annotations

import pytest
from scapy.all import IP, UDP, Ether

from nwguard.errors import NotFoundError

from .lab import Lab, Node
from .nwg import COUNTER_SETS, Nwguard

pytestmark = pytest.mark.kernel

MAC = "52:54:00:56:44:32"
GUEST_IP = "192.0.2.50"


def iface_xml(bridge: str, dev: str, filter: str = "clean-traffic") -> str:
    # The seed's example, verbatim but for names and addresses.
    return f"""<interface type='bridge'>
  <mac address='{MAC}'/>
  <source bridge='{bridge}'/>
  <ip address='{GUEST_IP}'/>
  <target dev='{dev}'/>
  <model type='virtio'/>
  <filterref filter='{filter}'/>
</interface>"""


def attach_guest(lab: Lab, ng: Nwguard, dev: str, peer: str) -> Node:
    """Attach through nwguard (veth), then move the peer into a fresh guest namespace."""
    br = next(iter(lab.bridges.values()))
    ng.call("iface_attach", iface_xml(br.name, dev), None, peer)
    ns = lab.namespace("vm")
    lab.run(lab.host_ns, "ip", "link", "set", peer, "netns", ns)
    lab.run(ns, "ip", "link", "set", peer, "name", "eth0")
    lab.run(ns, "ip", "link", "set", "eth0", "address", MAC, "up")
    lab.run(ns, "ip", "addr", "add", f"{GUEST_IP}/24", "dev", "eth0")
    return Node("vm", "guest", ns, "eth0", dev, lab.host_ns, MAC, GUEST_IP, 24, bridge=br.name)


def test_attached_interface_cannot_spoof_and_detach_leaves_nothing(lab: Lab, tmp_path) -> None:
    other = lab.guest("other")
    ng = Nwguard(lab, tmp_path)
    dev, peer = lab.devname("vnet"), lab.devname("vp")
    vm = attach_guest(lab, ng, dev, peer)

    assert lab.ping(vm, other)
    legit = Ether(src=MAC, dst=other.mac) / IP(src=GUEST_IP, dst=other.ip) / UDP(dport=9)
    spoofed = Ether(src=MAC, dst=other.mac) / IP(src="192.0.2.99", dst=other.ip) / UDP(dport=9)
    assert lab.probe(vm, legit, other)
    assert not lab.probe(vm, spoofed, other, timeout=0.4)
    listed = ng.call("iface_list")
    assert [(r.dev, r.mac, r.ips, r.filter) for r in listed] == [
        (dev, MAC, (GUEST_IP,), "clean-traffic")
    ]

    ng.call("iface_detach", dev)
    links = lab.run(lab.host_ns, "ip", "-o", "link").stdout
    assert dev not in links
    ruleset = lab.nft_ruleset()["nftables"]
    # the counter sets keep the counts of the interface name (README: counters): not rules
    elements = [
        o
        for o in ruleset
        if ("set" in o or "map" in o)
        and (s := o.get("set") or o.get("map")).get("elem")
        and s["name"] not in COUNTER_SETS
    ]
    assert elements == []
    assert ng.call("iface_list") == []


def test_failed_attach_removes_the_port_it_created(lab: Lab, tmp_path) -> None:
    br = lab.bridge()
    ng = Nwguard(lab, tmp_path)
    dev = lab.devname("vnet")
    with pytest.raises(NotFoundError, match="no-such-filter"):
        ng.call("iface_attach", iface_xml(br.name, dev, "no-such-filter"))
    assert dev not in lab.run(lab.host_ns, "ip", "-o", "link").stdout
    assert ng.call("iface_list") == []


def test_attach_to_a_missing_bridge_is_refused_and_creates_nothing(lab: Lab, tmp_path) -> None:
    lab.host()
    ng = Nwguard(lab, tmp_path)
    dev = lab.devname("vnet")
    with pytest.raises(NotFoundError, match="bridge 'nosuchbr' does not exist"):
        ng.call("iface_attach", iface_xml("nosuchbr", dev))
    assert dev not in lab.run(lab.host_ns, "ip", "-o", "link").stdout
