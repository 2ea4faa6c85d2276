"""The lab itself, with no nwguard rules anywhere: what the kernel tests stand on."""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from .lab import PKTSEND, Lab, LabCallTimeout, list_netns, sweep

pytestmark = pytest.mark.kernel


def udp_frame(src, dst, payload=b"nwguard-lab", dport=9):
    return (
        Ether(src=src.mac, dst=dst.mac)
        / IP(src=src.ip, dst=dst.ip)
        / UDP(sport=40000, dport=dport)
        / Raw(payload)
    )


def test_setup_is_fast_and_names_are_short():
    t0 = time.monotonic()
    with Lab() as lab:
        a, b = lab.guest("a"), lab.guest("b")
        elapsed = time.monotonic() - t0
        names = [a.port, b.port, a.bridge, *lab.bridges]
        assert all(len(n) <= 15 for n in names), names
        assert all(ns.startswith("nwgt-") for ns in lab.namespaces)
        assert len(lab.namespaces) == 3
    assert elapsed < 1.0, f"host + 2 guests took {elapsed:.3f}s"


def test_guests_ping_and_connect(lab):
    a, b = lab.guest("a"), lab.guest("b")
    assert lab.ping(a, b)
    assert lab.ping(b, a.ip)
    assert lab.tcp_connect(a, b, 8080)
    assert lab.tcp_try(b, a, 8081, listen=False) == "ECONNREFUSED"
    assert lab.udp_exchange(a, b, 5353)


def test_ipv6_between_guests(lab):
    a = lab.guest("a", ip6="2001:db8::11")
    b = lab.guest("b", ip6="2001:db8::12/64")
    assert lab.ping(a, b.ip6)
    assert lab.tcp_connect(a, b, 8080, dst=b.ip6)
    assert lab.udp_exchange(b, a, 5353, dst=a.ip6)


def test_host_namespace_settings(lab):
    host = lab.host()
    assert lab.read_sysctl(host, "net.bridge.bridge-nf-call-iptables") == "1"
    assert lab.read_sysctl(host, "net.bridge.bridge-nf-call-ip6tables") == "1"
    assert lab.read_sysctl(host, "net.ipv4.ip_forward") == "0"
    g = lab.guest("g", mac="52:54:00:00:00:42", port="vnet-given")
    assert lab.read_sysctl(g, "net.ipv6.conf.eth0.accept_dad") == "0"
    links = json.loads(lab.run(host, "ip", "-j", "link", "show", "vnet-given").stdout)
    assert links[0]["master"] == g.bridge
    assert links[0]["address"] == "fe:54:00:00:00:42"
    lab.host(forwarding=True)
    assert lab.read_sysctl(host, "net.ipv4.ip_forward") == "1"
    assert lab.nft_ruleset()["nftables"][0].get("metainfo")
    assert len(lab.nft_ruleset()["nftables"]) == 1  # nothing but metainfo: empty ruleset


def test_frame_from_a_reaches_b(lab):
    a, b = lab.guest("a"), lab.guest("b")
    frame = udp_frame(a, b)
    got = lab.transmit(a, frame, b)
    assert got is not None and bytes(got).startswith(bytes(frame))
    assert lab.probe(a, frame, b, match="udp dst port 9")
    assert lab.probe(a, frame, b, match=lambda raw: Raw in Ether(raw))
    # on the host side: received on a's port, sent out of b's
    assert lab.probe(a, frame, a.port_end)
    assert not lab.probe(a, frame, b.port_end, timeout=0.2)
    assert lab.probe(a, frame, b.port_end, outgoing=True)


def test_unicast_stays_off_other_ports_once_learned(lab):
    a, b, c = lab.guest("a"), lab.guest("b"), lab.guest("c")
    assert lab.ping(a, b)  # the bridge learns both MACs
    frame = udp_frame(a, b)
    assert not lab.probe(a, frame, c, timeout=0.3)
    assert lab.probe(a, frame, b)
    # broadcast floods to everyone, the host's bridge device included
    arp = Ether(src=a.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=a.ip, pdst="192.0.2.99")
    assert lab.probe(a, arp, c)
    assert lab.probe(a, arp, lab.bridges[a.bridge])


def test_nothing_sent_nothing_seen(lab):
    lab.guest("a")
    b = lab.guest("b")
    marker = b"never-sent-" + os.urandom(8)
    assert lab.sniff(b, timeout=0.2, match=lambda raw: marker in raw) == []


def test_outside_is_routed_not_bridged(lab):
    host = lab.host(forwarding=True)
    g = lab.guest("g", gateway="192.0.2.1", bridge=lab.bridge(ip="192.0.2.1"))
    out = lab.outside("out", gateway="198.51.100.1")
    assert out.ip == "198.51.100.2" and out.host_ip == "198.51.100.1"
    assert lab.ping(host, out)
    assert lab.ping(g, out)  # guest -> bridge -> routed by the host -> outside
    assert lab.tcp_connect(out, g, 2222)
    lab.set_forwarding(False)
    assert not lab.ping(g, out, timeout=0.3)


def test_call_in_runs_inside_the_namespace(lab):
    a = lab.guest("a")
    names = {n for _, n in lab.call_in(lab.host_ns, socket.if_nameindex)}
    assert {a.port, a.bridge} <= names
    assert sorted(lab.call_in(a, os.listdir, "/sys/class/net")) == ["eth0", "lo"]
    assert lab.call_in(a, lambda x, y=0: x + y, 2, y=3) == 5  # a fork: lambdas are fine
    with pytest.raises(ZeroDivisionError) as err:
        lab.call_in(a, lambda: 1 / 0)
    assert "raised by" in err.value.__notes__[0]
    with pytest.raises(LabCallTimeout):
        lab.call_in(a, time.sleep, 5, timeout=0.2)


def test_pktsend_script_in_a_namespace(lab):
    a, b = lab.guest("a"), lab.guest("b")
    frame = bytes(udp_frame(a, b, payload=b"via-the-script"))
    sniff = lab.popen(
        b, sys.executable, str(PKTSEND), "sniff", "eth0", "--timeout", "5", "--count", "1",
        "--filter", "udp and dst port 9", stdout=__import__("subprocess").PIPE, text=True,
    )  # fmt: skip
    assert json.loads(sniff.stdout.readline()) == {"ready": True}
    sent = lab.run(a, sys.executable, str(PKTSEND), "send", "eth0",
                   input=json.dumps({"frames": [frame.hex()]}))  # fmt: skip
    assert json.loads(sent.stdout) == {"sent": 1}
    out, _ = sniff.communicate(timeout=10)
    assert [bytes.fromhex(h) for h in json.loads(out)["frames"]] == [frame]


def test_close_leaves_nothing_behind():
    lab = Lab()
    a = lab.guest("a")
    lab.popen(a, "sleep", "60")
    lab.start_in(a, time.sleep, 60)
    names = list(lab.namespaces)
    assert set(names) <= set(list_netns())
    lab.close()
    assert not set(names) & set(list_netns())
    assert not [ns for ns in list_netns() if ns.startswith(f"nwgt-{os.getpid()}-{lab.tag}")]
    lab.close()  # twice is fine


def test_sweep_removes_only_dead_owners():
    dead = "nwgt-999999999-dead-x"  # no such pid
    os.system(f"ip netns add {dead}")
    try:
        with Lab() as live:
            live.host()
            removed = sweep()
            assert dead in removed
            assert live.host_ns in list_netns()
    finally:
        os.system(f"ip netns del {dead} 2>/dev/null")
