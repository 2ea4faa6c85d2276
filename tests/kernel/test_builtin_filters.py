"""libvirt's built-in filters on a real port, proved with real frames.

Guest ``a`` is the filtered one; guest ``b`` on the same bridge is unfiltered and plays the
peer: it receives what ``a`` sends (direction ``out``) and sends what ``a`` receives
(direction ``in``). Each test sends a handful of frames at once and reads, per frame, whether
it arrived (:func:`deliveries`); every set includes a frame that must pass, so a silent
sniffer cannot make a "dropped" verdict. Expected verdicts follow
``spec/builtin-filters.md`` (rule by rule) and ``spec/ebiptables-layout.md``.
"""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from .lab import Lab, Node
from .nwg import Nwguard, deliveries

pytestmark = pytest.mark.kernel

BCAST = "ff:ff:ff:ff:ff:ff"
FOREIGN_MAC = "52:54:00:de:ad:01"
FOREIGN_IP = "192.0.2.250"
ETH_RARP, ETH_QEMU_OLD_ANNOUNCE, ETH_OTHER = 0x8035, 0x0835, 0x88B5
RARP_REQUEST_REVERSE, RARP_REPLY_REVERSE = 3, 4


@pytest.fixture
def ng(lab: Lab, tmp_path, firewall_backend) -> Nwguard:
    return Nwguard(lab, tmp_path)


@pytest.fixture
def a(lab: Lab) -> Node:
    return lab.guest("a")


@pytest.fixture
def b(lab: Lab, a: Node) -> Node:
    return lab.guest("b")


# ------------------------------------------------------------------------------ frames


def ipv4(src: Node, dst: Node, *, mac: str | None = None, ip: str | None = None,
         dst_ip: str | None = None, dst_mac: str | None = None, dport: int = 9,
         sport: int = 40000, tag: str = "") -> Ether:  # fmt: skip
    """UDP from ``src`` to ``dst``, with optional overrides of either end's addresses."""
    return (
        Ether(src=mac or src.mac, dst=dst_mac or dst.mac)
        / IP(src=ip or src.ip, dst=dst_ip or dst.ip)
        / UDP(sport=sport, dport=dport)
        / Raw(f"nwguard-test {tag}".encode())
    )


def tcp_syn(src: Node, dst: Node, *, ip: str | None = None, sport: int = 40001,
            dport: int = 80) -> Ether:  # fmt: skip
    return (
        Ether(src=src.mac, dst=dst.mac)
        / IP(src=ip or src.ip, dst=dst.ip)
        / TCP(sport=sport, dport=dport, flags="S", seq=1000)
    )


def arp(src: Node, dst: Node, *, op: int = 1, mac: str | None = None, hwsrc: str | None = None,
        psrc: str | None = None, eth_dst: str = BCAST, tag: int = 0) -> Ether:  # fmt: skip
    """An ARP request (op 1) or reply (op 2) of ``src`` about ``dst``."""
    return (
        Ether(src=mac or src.mac, dst=eth_dst)
        / ARP(
            op=op,
            hwsrc=hwsrc or src.mac,
            psrc=psrc or src.ip,
            hwdst="00:00:00:00:00:00" if op == 1 else dst.mac,
            pdst=dst.ip,
        )
        / Raw(bytes([tag]) * 4)
    )


def rarp(mac: str, *, op: int = RARP_REQUEST_REVERSE, dst: str = BCAST, hwsrc: str | None = None,
         hwdst: str | None = None, psrc: str = "0.0.0.0", pdst: str = "0.0.0.0") -> Ether:  # fmt: skip
    """qemu's announce-self frame by default; each keyword breaks one part of the pattern."""
    return Ether(src=mac, dst=dst, type=ETH_RARP) / ARP(
        op=op, hwsrc=hwsrc or mac, hwdst=hwdst or mac, psrc=psrc, pdst=pdst
    )


def ipv6(src_mac: str, dst_mac: str, tag: str = "") -> Ether:
    return (
        Ether(src=src_mac, dst=dst_mac)
        / IPv6(src="fe80::5054:ff:fe00:1", dst="fe80::5054:ff:fe00:2")
        / UDP(sport=40000, dport=9)
        / Raw(f"nwguard-test v6 {tag}".encode())
    )


def other_l2(src_mac: str, dst_mac: str, ethertype: int = ETH_OTHER) -> Ether:
    return Ether(src=src_mac, dst=dst_mac, type=ethertype) / Raw(b"nwguard-test-l2" + bytes(40))


def dhcp_discover(guest: Node) -> Ether:
    return (
        Ether(src=guest.mac, dst=BCAST)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(guest.mac.replace(":", "")), xid=0x1234)
        / DHCP(options=[("message-type", "discover"), "end"])
    )


def dhcp_offer(server: Node, client: Node, *, dport: int = 68) -> Ether:
    return (
        Ether(src=server.mac, dst=BCAST)
        / IP(src=server.ip, dst="255.255.255.255")
        / UDP(sport=67, dport=dport)
        / BOOTP(op=2, yiaddr=client.ip, chaddr=bytes.fromhex(client.mac.replace(":", "")))
        / DHCP(options=[("message-type", "offer"), "end"])
    )


def verdicts(lab: Lab, sender: Node, frames: dict, receiver: Node, **kw) -> dict[str, str]:
    """Like :func:`deliveries`, but "pass"/"drop" per frame, for readable assertion diffs."""
    got = deliveries(lab, sender, frames, receiver, **kw)
    return {name: "pass" if ok else "drop" for name, ok in got.items()}


def expect(**verdict: str) -> dict[str, str]:
    return verdict


# ------------------------------------------------------------------------------ clean-traffic


def test_clean_traffic_lets_the_guests_own_ping_tcp_and_udp_through(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    if ng.backend == "nftables":
        assert a.port in ng.census().dispatch["l2o"]
    else:
        assert f"-i {a.port} -j libvirt-I-{a.port}" in str(ng.kernel())
    assert lab.ping(a, b) and lab.ping(b, a)
    assert lab.tcp_connect(a, b, 8080) and lab.tcp_connect(b, a, 8081)
    assert lab.udp_exchange(a, b, 5353) and lab.udp_exchange(b, a, 5354)


def test_clean_traffic_lets_arp_requests_and_replies_through(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "request": arp(a, b, op=1),
        "reply": arp(a, b, op=2, eth_dst=b.mac),
        "gratuitous": Ether(src=a.mac, dst=BCAST)
        / ARP(op=1, hwsrc=a.mac, psrc=a.ip, hwdst="00:00:00:00:00:00", pdst=a.ip),
    }
    assert verdicts(lab, a, frames, b) == expect(request="pass", reply="pass", gratuitous="pass")
    back = {"request": arp(b, a, op=1), "reply": arp(b, a, op=2, eth_dst=a.mac)}
    assert verdicts(lab, b, back, a) == expect(request="pass", reply="pass")


def test_clean_traffic_lets_a_dhcp_discover_from_0_0_0_0_through(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "discover": dhcp_discover(a),
        "tcp from 0.0.0.0": Ether(src=a.mac, dst=BCAST)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / TCP(sport=68, dport=67, flags="S"),
    }
    # no-ip-spoofing returns only *UDP* from 0.0.0.0 (libvirt rule B1)
    assert verdicts(lab, a, frames, b) == expect(**{"discover": "pass", "tcp from 0.0.0.0": "drop"})
    assert verdicts(lab, b, {"offer": dhcp_offer(b, a)}, a) == expect(offer="pass")


def test_clean_traffic_drops_frames_with_a_foreign_source_mac(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "own mac": ipv4(a, b, tag="own"),
        "foreign mac ipv4": ipv4(a, b, mac=FOREIGN_MAC, tag="foreign"),
        "foreign mac arp": arp(a, b, mac=FOREIGN_MAC),
        "foreign mac, arp fields own": arp(a, b, mac=FOREIGN_MAC, op=2, eth_dst=b.mac),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "own mac": "pass", "foreign mac ipv4": "drop", "foreign mac arp": "drop",
        "foreign mac, arp fields own": "drop",
    })  # fmt: skip


def test_clean_traffic_drops_ip_spoofing(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "own ip": ipv4(a, b, tag="own"),
        "foreign ip udp": ipv4(a, b, ip=FOREIGN_IP, tag="foreign"),
        "foreign ip tcp": tcp_syn(a, b, ip=FOREIGN_IP),
        "b's ip": ipv4(a, b, ip=b.ip, tag="b"),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "own ip": "pass", "foreign ip udp": "drop", "foreign ip tcp": "drop", "b's ip": "drop",
    })  # fmt: skip


def test_clean_traffic_drops_arp_spoofing_of_sender_mac_or_sender_ip(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "honest": arp(a, b, tag=1),
        "sender mac foreign": arp(a, b, hwsrc=FOREIGN_MAC, tag=2),
        "sender ip foreign": arp(a, b, psrc=FOREIGN_IP, tag=3),
        "poisoning reply": arp(a, b, op=2, psrc=FOREIGN_IP, eth_dst=b.mac, tag=4),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "honest": "pass", "sender mac foreign": "drop", "sender ip foreign": "drop",
        "poisoning reply": "drop",
    })  # fmt: skip


def test_clean_traffic_passes_qemus_rarp_announce_and_ethertype_0x0835(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "rarp announce": rarp(a.mac),
        "old qemu 0x0835": other_l2(a.mac, BCAST, ETH_QEMU_OLD_ANNOUNCE),
    }
    assert verdicts(lab, a, frames, b) == expect(
        **{"rarp announce": "pass", "old qemu 0x0835": "pass"}
    )


def test_clean_traffic_drops_rarp_other_than_the_announce(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "announce": rarp(a.mac),
        "unicast": rarp(a.mac, dst=b.mac),
        "reply opcode": rarp(a.mac, op=RARP_REPLY_REVERSE),
        "request opcode 1": rarp(a.mac, op=1),
        "asks about another mac": rarp(a.mac, hwsrc=FOREIGN_MAC, hwdst=FOREIGN_MAC),
        "carries an ip": rarp(a.mac, psrc=a.ip),
        "target ip set": rarp(a.mac, pdst=b.ip),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "announce": "pass", "unicast": "drop", "reply opcode": "drop", "request opcode 1": "drop",
        "asks about another mac": "drop", "carries an ip": "drop", "target ip set": "drop",
    })  # fmt: skip


def test_clean_traffic_drops_ipv6_and_other_ethertypes_from_the_guest(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "ipv4": ipv4(a, b),
        "ipv6": ipv6(a.mac, b.mac),
        "ethertype 0x88b5": other_l2(a.mac, b.mac),
        "vlan tagged": Ether(src=a.mac, dst=b.mac, type=0x8100)
        / Raw(bytes.fromhex("0064 0800") + bytes(40)),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "ipv4": "pass", "ipv6": "drop", "ethertype 0x88b5": "drop", "vlan tagged": "drop",
    })  # fmt: skip


def test_clean_traffic_towards_the_guest_passes_ipv4_and_arp_and_drops_ipv6(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "ipv4": ipv4(b, a, tag="b"),
        "ipv4 any source": ipv4(b, a, ip=FOREIGN_IP, mac=FOREIGN_MAC, tag="any"),
        "ipv4 broadcast": ipv4(b, a, dst_ip="192.0.2.255", dst_mac=BCAST, tag="bc"),
        "arp": arp(b, a),
        "rarp announce about a": rarp(b.mac, hwsrc=a.mac, hwdst=a.mac),
        "rarp about b": rarp(b.mac),
        "ipv6": ipv6(b.mac, a.mac),
        "ethertype 0x88b5": other_l2(b.mac, a.mac),
    }
    assert verdicts(lab, b, frames, a) == expect(**{
        "ipv4": "pass", "ipv4 any source": "pass", "ipv4 broadcast": "pass", "arp": "pass",
        "rarp announce about a": "pass", "rarp about b": "drop", "ipv6": "drop",
        "ethertype 0x88b5": "drop",
    })  # fmt: skip


def test_clean_traffic_on_one_port_leaves_other_ports_alone(lab, ng, a, b):
    c = lab.guest("c")
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "spoofed ip": ipv4(b, c, ip=FOREIGN_IP),
        "spoofed mac": ipv4(b, c, mac=FOREIGN_MAC, tag="m"),
        "ipv6": ipv6(b.mac, c.mac),
    }
    assert verdicts(lab, b, frames, c) == expect(**{
        "spoofed ip": "pass", "spoofed mac": "pass", "ipv6": "pass",
    })  # fmt: skip


def test_clean_traffic_with_two_addresses_passes_both_and_drops_a_third(lab, ng, a, b):
    second = "192.0.2.201"
    lab.run(a, "ip", "addr", "add", f"{second}/24", "dev", a.iface)
    ng.bind(a, "clean-traffic", IP=[a.ip, second])
    frames = {
        "first": ipv4(a, b, tag="1"),
        "second": ipv4(a, b, ip=second, tag="2"),
        "third": ipv4(a, b, ip="192.0.2.202", tag="3"),
        "arp first": arp(a, b, tag=1),
        "arp second": arp(a, b, psrc=second, tag=2),
        "arp third": arp(a, b, psrc="192.0.2.202", tag=3),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "first": "pass", "second": "pass", "third": "drop",
        "arp first": "pass", "arp second": "pass", "arp third": "drop",
    })  # fmt: skip
    assert lab.ping(b, second)  # the second address really works both ways


# ------------------------------------------------------------------------------ one filter alone


def test_no_ip_spoofing_alone_drops_foreign_source_ips(lab, ng, a, b):
    ng.bind(a, "no-ip-spoofing", IP=a.ip)
    frames = {
        "own ip": ipv4(a, b, tag="own"),
        "foreign ip": ipv4(a, b, ip=FOREIGN_IP),
        "dhcp discover": dhcp_discover(a),
        "tcp from 0.0.0.0": Ether(src=a.mac, dst=b.mac) / IP(src="0.0.0.0", dst=b.ip) / TCP(),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "own ip": "pass", "foreign ip": "drop", "dhcp discover": "pass", "tcp from 0.0.0.0": "drop",
    })  # fmt: skip


def test_no_ip_spoofing_alone_leaves_macs_arp_ipv6_and_incoming_traffic_alone(lab, ng, a, b):
    ng.bind(a, "no-ip-spoofing", IP=a.ip)
    out = {
        "own ip, foreign mac": ipv4(a, b, mac=FOREIGN_MAC),
        "arp with foreign ip": arp(a, b, psrc=FOREIGN_IP),
        "ipv6": ipv6(a.mac, b.mac),
        "other ethertype": other_l2(a.mac, b.mac),
    }
    assert set(verdicts(lab, a, out, b).values()) == {"pass"}
    inbound = {"from anyone": ipv4(b, a, ip=FOREIGN_IP, mac=FOREIGN_MAC)}
    assert verdicts(lab, b, inbound, a) == expect(**{"from anyone": "pass"})


def test_no_mac_spoofing_alone_drops_every_frame_with_a_foreign_source_mac(lab, ng, a, b):
    ng.bind(a, "no-mac-spoofing")  # $MAC comes from the binding
    frames = {
        "own mac": ipv4(a, b, tag="own"),
        "ipv4": ipv4(a, b, mac=FOREIGN_MAC),
        "arp": arp(a, b, mac=FOREIGN_MAC),
        "ipv6": ipv6(FOREIGN_MAC, b.mac),
        "other ethertype": other_l2(FOREIGN_MAC, b.mac),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "own mac": "pass", "ipv4": "drop", "arp": "drop", "ipv6": "drop", "other ethertype": "drop",
    })  # fmt: skip


def test_no_mac_spoofing_alone_leaves_ips_protocols_and_incoming_traffic_alone(lab, ng, a, b):
    ng.bind(a, "no-mac-spoofing")
    out = {
        "foreign ip": ipv4(a, b, ip=FOREIGN_IP),
        "arp foreign sender": arp(a, b, hwsrc=FOREIGN_MAC, psrc=FOREIGN_IP),
        "ipv6": ipv6(a.mac, b.mac),
        "other ethertype": other_l2(a.mac, b.mac),
    }
    assert set(verdicts(lab, a, out, b).values()) == {"pass"}
    inbound = {"foreign source mac": ipv4(b, a, mac=FOREIGN_MAC), "ipv6": ipv6(FOREIGN_MAC, a.mac)}
    assert set(verdicts(lab, b, inbound, a).values()) == {"pass"}


def test_no_arp_spoofing_alone_drops_arp_with_foreign_sender_mac_or_ip(lab, ng, a, b):
    ng.bind(a, "no-arp-spoofing", IP=a.ip)
    frames = {
        "honest": arp(a, b, tag=1),
        "honest reply": arp(a, b, op=2, eth_dst=b.mac, tag=2),
        "sender mac": arp(a, b, hwsrc=FOREIGN_MAC, tag=3),
        "sender ip": arp(a, b, psrc=FOREIGN_IP, tag=4),
        "both": arp(a, b, hwsrc=FOREIGN_MAC, psrc=FOREIGN_IP, tag=5),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "honest": "pass", "honest reply": "pass", "sender mac": "drop", "sender ip": "drop",
        "both": "drop",
    })  # fmt: skip


def test_no_arp_spoofing_alone_leaves_non_arp_and_incoming_arp_alone(lab, ng, a, b):
    ng.bind(a, "no-arp-spoofing", IP=a.ip)
    out = {
        "ipv4 foreign ip": ipv4(a, b, ip=FOREIGN_IP),
        "ipv4 foreign mac": ipv4(a, b, mac=FOREIGN_MAC, tag="m"),
        # only the ARP payload is checked, not the Ethernet source
        "arp, ethernet source foreign": arp(a, b, mac=FOREIGN_MAC),
        "ipv6": ipv6(a.mac, b.mac),
    }
    assert set(verdicts(lab, a, out, b).values()) == {"pass"}
    inbound = {"arp claiming anything": arp(b, a, hwsrc=FOREIGN_MAC, psrc=FOREIGN_IP)}
    assert set(verdicts(lab, b, inbound, a).values()) == {"pass"}


CATCH_ALL = "<rule action='drop' direction='inout' priority='1000'/>"


def only(ng: Nwguard, name: str, filterref: str) -> str:
    """Define ``name``: ``filterref`` then an Ethernet-layer drop of everything else."""
    ng.define(
        f"<filter name='{name}' chain='root'><filterref filter='{filterref}'/>{CATCH_ALL}</filter>"
    )
    return name


def test_allow_dhcp_alone_drops_nothing(lab, ng, a, b):
    ng.bind(a, "allow-dhcp")
    out = {"ipv4": ipv4(a, b, ip=FOREIGN_IP), "arp": arp(a, b), "ipv6": ipv6(a.mac, b.mac)}
    assert set(verdicts(lab, a, out, b).values()) == {"pass"}
    inbound = {"ipv4": ipv4(b, a), "ipv6": ipv6(b.mac, a.mac)}
    assert set(verdicts(lab, b, inbound, a).values()) == {"pass"}


def test_allow_dhcp_opens_exactly_dhcp_in_front_of_a_catch_all_drop(lab, ng, a, b):
    ng.bind(a, only(ng, "dhcp-only", "allow-dhcp"))
    out = {
        "discover": dhcp_discover(a),
        "discover to a unicast ip": Ether(src=a.mac, dst=b.mac)
        / IP(src="0.0.0.0", dst=b.ip)
        / UDP(sport=68, dport=67)
        / Raw(b"unicast"),
        "other udp": ipv4(a, b, dport=67),
        "arp": arp(a, b),
    }
    assert verdicts(lab, a, out, b) == expect(**{
        "discover": "pass", "discover to a unicast ip": "drop", "other udp": "drop", "arp": "drop",
    })  # fmt: skip
    inbound = {
        "offer": dhcp_offer(b, a),
        "to port 69": dhcp_offer(b, a, dport=69),
        "other udp": ipv4(b, a),
    }
    assert verdicts(lab, b, inbound, a) == expect(**{
        "offer": "pass", "to port 69": "drop", "other udp": "drop",
    })  # fmt: skip


def test_allow_incoming_ipv4_alone_drops_nothing(lab, ng, a, b):
    ng.bind(a, "allow-incoming-ipv4")
    assert set(verdicts(lab, a, {"ipv4": ipv4(a, b), "ipv6": ipv6(a.mac, b.mac)}, b).values()) == {
        "pass"
    }
    assert set(verdicts(lab, b, {"ipv4": ipv4(b, a), "arp": arp(b, a)}, a).values()) == {"pass"}


def test_allow_incoming_ipv4_opens_only_incoming_ipv4_in_front_of_a_catch_all(lab, ng, a, b):
    ng.bind(a, only(ng, "in-v4-only", "allow-incoming-ipv4"))
    inbound = {
        "ipv4": ipv4(b, a),
        "ipv4 from anyone": ipv4(b, a, ip=FOREIGN_IP, mac=FOREIGN_MAC, tag="x"),
        "arp": arp(b, a),
        "ipv6": ipv6(b.mac, a.mac),
    }
    assert verdicts(lab, b, inbound, a) == expect(**{
        "ipv4": "pass", "ipv4 from anyone": "pass", "arp": "drop", "ipv6": "drop",
    })  # fmt: skip
    assert verdicts(lab, a, {"ipv4": ipv4(a, b)}, b) == expect(ipv4="drop")


def test_no_ip_multicast_alone_drops_multicast_the_guest_sends(lab, ng, a, b):
    ng.bind(a, "no-ip-multicast")
    frames = {
        "unicast": ipv4(a, b),
        "224.0.0.251": ipv4(a, b, dst_ip="224.0.0.251", dst_mac="01:00:5e:00:00:fb"),
        "239.255.255.250": ipv4(a, b, dst_ip="239.255.255.250", dst_mac="01:00:5e:7f:ff:fa"),
        "broadcast": ipv4(a, b, dst_ip="255.255.255.255", dst_mac=BCAST),
        "arp": arp(a, b),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "unicast": "pass", "224.0.0.251": "drop", "239.255.255.250": "drop", "broadcast": "pass",
        "arp": "pass",
    })  # fmt: skip


def test_no_ip_multicast_alone_leaves_incoming_multicast_alone(lab, ng, a, b):
    ng.bind(a, "no-ip-multicast")
    inbound = {"224.0.0.251": ipv4(b, a, dst_ip="224.0.0.251", dst_mac="01:00:5e:00:00:fb")}
    assert verdicts(lab, b, inbound, a) == expect(**{"224.0.0.251": "pass"})


def test_no_mac_broadcast_alone_drops_ipv4_to_the_broadcast_mac_only(lab, ng, a, b):
    ng.bind(a, "no-mac-broadcast")
    frames = {
        "ipv4 unicast": ipv4(a, b),
        "ipv4 broadcast mac": ipv4(a, b, dst_ip="192.0.2.255", dst_mac=BCAST),
        "ipv4 multicast mac": ipv4(a, b, dst_ip="224.0.0.251", dst_mac="01:00:5e:00:00:fb"),
        "arp broadcast": arp(a, b),  # the rule sits in an ipv4 chain: ARP never reaches it
        "ipv6 broadcast mac": ipv6(a.mac, BCAST),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "ipv4 unicast": "pass", "ipv4 broadcast mac": "drop", "ipv4 multicast mac": "pass",
        "arp broadcast": "pass", "ipv6 broadcast mac": "pass",
    })  # fmt: skip
    inbound = {"ipv4 broadcast mac": ipv4(b, a, dst_ip="192.0.2.255", dst_mac=BCAST)}
    assert verdicts(lab, b, inbound, a) == expect(**{"ipv4 broadcast mac": "pass"})


def test_no_other_l2_traffic_alone_drops_everything_both_ways(lab, ng, a, b):
    ng.bind(a, "no-other-l2-traffic")
    out = {"ipv4": ipv4(a, b), "arp": arp(a, b), "ipv6": ipv6(a.mac, b.mac),
           "rarp announce": rarp(a.mac)}  # fmt: skip
    assert set(verdicts(lab, a, out, b).values()) == {"drop"}
    inbound = {"ipv4": ipv4(b, a), "arp": arp(b, a), "ipv6": ipv6(b.mac, a.mac)}
    assert set(verdicts(lab, b, inbound, a).values()) == {"drop"}


def test_no_other_l2_traffic_alone_leaves_other_ports_alone(lab, ng, a, b):
    c = lab.guest("c")
    ng.bind(a, "no-other-l2-traffic")
    assert lab.ping(b, c) and lab.tcp_connect(c, b, 8080)
    assert not lab.ping(b, a, timeout=0.3)


def test_allow_dhcp_server_lets_offers_in_only_from_the_listed_servers(lab, ng, a, b):
    c = lab.guest("c")
    ng.define(
        "<filter name='dhcp-from-b' chain='root'><filterref filter='allow-dhcp-server'/>"
        f"{CATCH_ALL}</filter>"
    )
    ng.bind(a, "dhcp-from-b", DHCPSERVER=b.ip)
    assert verdicts(lab, a, {"discover": dhcp_discover(a)}, b) == expect(discover="pass")
    assert verdicts(lab, b, {"offer from b": dhcp_offer(b, a)}, a) == expect(
        **{"offer from b": "pass"}
    )
    assert verdicts(lab, c, {"offer from c": dhcp_offer(c, a)}, a) == expect(
        **{"offer from c": "drop"}
    )


def test_clean_traffic_gateway_lets_the_guest_talk_only_to_the_gateway(lab, ng, a, b):
    gw, c = b, lab.guest("c")
    ng.bind(a, "clean-traffic-gateway", IP=a.ip, GATEWAY_MAC=gw.mac)
    out = {
        "to gateway": ipv4(a, gw, tag="gw"),
        "to another guest": ipv4(a, c, tag="c"),
        "arp to anyone": arp(a, c),
    }
    assert verdicts(lab, a, out, gw) | verdicts(lab, a, {"to another guest": out["to another guest"]}, c) == {
        "to gateway": "pass", "to another guest": "drop", "arp to anyone": "pass",
    }  # fmt: skip
    assert verdicts(lab, gw, {"from gateway": ipv4(gw, a)}, a) == expect(**{"from gateway": "pass"})
    assert verdicts(lab, c, {"from another guest": ipv4(c, a)}, a) == expect(
        **{"from another guest": "drop"}
    )


def test_no_ipv6_spoofing_alone_drops_foreign_ipv6_sources(lab, ng, a, b):
    own = "2001:db8::11"
    ng.bind(a, "no-ipv6-spoofing", IPV6=own)

    def v6(src: str, proto=UDP) -> Ether:
        return (
            Ether(src=a.mac, dst=b.mac)
            / IPv6(src=src, dst="2001:db8::12")
            / proto(sport=40000, dport=9)
            / Raw(f"v6 {src} {proto.__name__}".encode())
        )

    frames = {
        "own": v6(own),
        "foreign": v6("2001:db8::99"),
        "link-local udp": v6("fe80::1"),
        "link-local tcp": v6("fe80::1", TCP),
        "ipv4 foreign": ipv4(a, b, ip=FOREIGN_IP),
    }
    assert verdicts(lab, a, frames, b) == expect(**{
        "own": "pass", "foreign": "drop", "link-local udp": "pass", "link-local tcp": "drop",
        "ipv4 foreign": "pass",
    })  # fmt: skip
