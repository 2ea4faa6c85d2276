"""IP address learning (CTRL_IP_LEARNING any / dhcp / none) with nwguardd in a real kernel.

Guests start without an address; the daemon (its own process in the lab's host namespace)
sniffs their ports. DHCP comes from a real dnsmasq on the lab bridge; guests speak DHCP with
scapy frames (no DHCP client needed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import mac2str

from .lab import Bridge, Lab, Node
from .nwg import binding_xml
from .nwgd import Daemon, wait_until

pytestmark = pytest.mark.kernel  # tests/conftest.py skips or, under CI, fails without root

SERVER = "192.0.2.1"


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    d = Daemon(lab)
    try:
        yield d
    finally:
        d.close()


def udp(src_mac: str, dst: Node | Bridge, src_ip: str, dst_ip: str | None = None) -> bytes:
    return bytes(
        Ether(src=src_mac, dst=dst.mac)
        / IP(src=src_ip, dst=dst_ip or dst.ip)
        / UDP(sport=4000, dport=9)
        / b"nwguard-learning-test"
    )


def learned(d: Daemon, port: str) -> list[str]:
    """The IP parameters ``nwfilter-binding-dumpxml`` shows for ``port``."""
    xml = d.client.nwfilter_binding_dumpxml(port)
    return [line.split("value='")[1].split("'")[0] for line in xml.splitlines()
            if "name='IP'" in line]  # fmt: skip


def wait_learned(d: Daemon, port: str, want: list[str], timeout: float = 5.0) -> None:
    if wait_until(lambda: learned(d, port) == want, timeout) is None:
        raise AssertionError(f"{port}: learned {learned(d, port)}, want {want}\n{d.log()}")


# ----------------------------------------------------------------------------- DHCP, by hand


def _dhcp_frame(g: Node, xid: int, options: list[Any], ciaddr: str = "0.0.0.0") -> bytes:
    src, dst = (ciaddr, SERVER) if ciaddr != "0.0.0.0" else ("0.0.0.0", "255.255.255.255")
    return bytes(
        Ether(src=g.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src=src, dst=dst)
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=mac2str(g.mac), xid=xid, flags=0x8000, ciaddr=ciaddr)
        / DHCP(options=[*options, "end"])
    )


def _reply(raw: bytes, xid: int, kind: int) -> dict[str, Any] | None:
    pkt = Ether(raw)
    if BOOTP not in pkt or pkt[BOOTP].xid != xid or DHCP not in pkt:
        return None
    opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    if opts.get("message-type", (None,))[0] != kind:
        return None
    return {"yiaddr": pkt[BOOTP].yiaddr, "server": opts.get("server_id", (None,))[0]}


def _exchange(lab: Lab, g: Node, frame: bytes, xid: int, kind: int) -> dict[str, Any] | None:
    with lab.sniffer(g, filter="udp and dst port 68") as sn:
        lab.send(g, frame)
        raw = sn.wait_for(lambda r: _reply(r, xid, kind) is not None, 3.0)
    return _reply(raw, xid, kind) if raw else None


def dhcp_lease(lab: Lab, g: Node, tries: int = 5) -> tuple[str, str]:
    """DISCOVER/OFFER/REQUEST/ACK from ``g``; configures the address; (address, server)."""
    xid = int.from_bytes(os.urandom(4), "big")
    offer = None
    for _ in range(tries):
        offer = _exchange(lab, g, _dhcp_frame(g, xid, [("message-type", "discover")]), xid, 2)
        if offer:
            break
    assert offer, f"no DHCPOFFER for {g.name}"
    req = [("message-type", "request"), ("requested_addr", offer["yiaddr"]),
           ("server_id", offer["server"])]  # fmt: skip
    ack = _exchange(lab, g, _dhcp_frame(g, xid, req), xid, 5)
    assert ack, f"no DHCPACK for {g.name}"
    lab.run(g, "ip", "addr", "add", f"{ack['yiaddr']}/24", "dev", g.iface)
    return ack["yiaddr"], ack["server"]


def dhcp_release(lab: Lab, g: Node, ip: str, server: str) -> None:
    xid = int.from_bytes(os.urandom(4), "big")
    lab.send(
        g, _dhcp_frame(g, xid, [("message-type", "release"), ("server_id", server)], ciaddr=ip)
    )


def rogue_ack(rogue: Node, victim: Node, yiaddr: str, lease: int = 3600) -> bytes:
    options = [("message-type", "ack"), ("server_id", rogue.ip), ("lease_time", lease), "end"]
    return bytes(
        Ether(src=rogue.mac, dst=victim.mac)
        / IP(src=rogue.ip, dst=yiaddr)
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, chaddr=mac2str(victim.mac), xid=0x1234, yiaddr=yiaddr)
        / DHCP(options=options)
    )


def start_dnsmasq(lab: Lab, br: Bridge, d: Daemon) -> None:
    lab.popen(
        lab.host_ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
        f"--interface={br.name}", "--bind-interfaces", "--except-interface=lo", "--port=0",
        "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,2m", "--user=root",
        f"--dhcp-leasefile={d.top / 'dnsmasq.leases'}", f"--pid-file={d.top / 'dnsmasq.pid'}",
        "--log-facility=-",
    )  # fmt: skip


def dhcp_network(lab: Lab, d: Daemon) -> Bridge:
    br = lab.bridge(ip=f"{SERVER}/24")
    start_dnsmasq(lab, br, d)
    return br


# ----------------------------------------------------------------------------- any


def test_any_locks_on_the_first_address_the_guest_uses(lab, daemon):
    a = lab.guest("a", ip=None)
    b = lab.guest("b")
    daemon.start()
    daemon.client.nwfilter_binding_create(binding_xml(a.port, a.mac, "clean-traffic"))
    assert learned(daemon, a.port) == []
    assert daemon.client.call("daemon.info")["learning"] == {a.port: "any"}
    # while learning: frames with another source MAC, and non-IPv4/ARP frames, are dropped
    assert not lab.probe(a, udp("52:54:00:de:ad:01", b, "192.0.2.50"), b, timeout=0.3)
    v6 = Ether(src=a.mac, dst=b.mac) / IPv6(src="fe80::5", dst="fe80::6") / UDP(dport=9) / b"x"
    assert not lab.probe(a, v6, b, timeout=0.3)
    assert learned(daemon, a.port) == []
    # the guest configures an address and talks: that address is locked in
    lab.run(a, "ip", "addr", "add", "192.0.2.50/24", "dev", a.iface)
    assert lab.ping(a, b, timeout=2.0)
    wait_learned(daemon, a.port, ["192.0.2.50"])
    assert lab.ping(a, b)
    assert lab.probe(a, udp(a.mac, b, "192.0.2.50"), b)
    assert not lab.probe(a, udp(a.mac, b, "192.0.2.51"), b, timeout=0.3)
    assert daemon.client.call("daemon.info")["learning"] == {}
    assert f"port {a.port}: learn 192.0.2.50" in daemon.log()
    # a restarted daemon keeps the address (same device): the port stays usable
    daemon.stop()
    daemon.start()
    assert learned(daemon, a.port) == ["192.0.2.50"]
    assert lab.ping(a, b)
    assert not lab.probe(a, udp(a.mac, b, "192.0.2.51"), b, timeout=0.3)
    # deleting the binding forgets it
    daemon.client.nwfilter_binding_delete(a.port)
    daemon.client.nwfilter_binding_create(binding_xml(a.port, a.mac, "clean-traffic"))
    assert learned(daemon, a.port) == []


def _embedded_bind(config: str, state: str, xml: str) -> list[str]:
    """Create a binding without a daemon (in the host namespace); return the warnings."""
    from nwguard.api import Client

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("nwguard").addHandler(Keep())
    Client.open(config, state).nwfilter_binding_create(xml)
    return records


def test_without_the_daemon_a_port_keeps_interim_rules_until_it_runs(lab, daemon):
    a = lab.guest("a", ip=None)
    b = lab.guest("b")
    xml = binding_xml(a.port, a.mac, "clean-traffic")
    warnings = lab.call_in(lab.host_ns, _embedded_bind, str(daemon.config), str(daemon.state), xml)
    assert any("learned" in w and "nwguardd is not running" in w for w in warnings), warnings
    assert (daemon.state / "learned" / f"{a.port}.json").is_file()
    assert not lab.probe(a, udp("52:54:00:de:ad:01", b, "192.0.2.50"), b, timeout=0.3)
    assert lab.probe(a, udp(a.mac, b, "192.0.2.50"), b)  # basic rules: IPv4 passes
    daemon.start()  # the daemon takes over the waiting request
    assert daemon.client.call("daemon.info")["learning"] == {a.port: "any"}
    lab.run(a, "ip", "addr", "add", "192.0.2.51/24", "dev", a.iface)
    assert lab.ping(a, b, timeout=2.0)
    wait_learned(daemon, a.port, ["192.0.2.51"])
    assert not lab.probe(a, udp(a.mac, b, "192.0.2.50"), b, timeout=0.3)


def _refused(config: str, state: str, xml: str) -> str:
    from nwguard.api import Client
    from nwguard.errors import ResolveError

    try:
        Client.open(config, state).nwfilter_binding_create(xml)
    except ResolveError as exc:
        return str(exc)
    return "accepted"


def test_learning_none_and_bad_values_are_errors(lab, daemon):
    a = lab.guest("a", ip=None)
    cfg, st = str(daemon.config), str(daemon.state)
    msg = lab.call_in(lab.host_ns, _refused, cfg, st,
                      binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="none"))  # fmt: skip
    assert "unresolvable variables" in msg and "IP" in msg
    msg = lab.call_in(lab.host_ns, _refused, cfg, st,
                      binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="Sometimes"))  # fmt: skip
    assert "filter 'clean-traffic' learning value 'Sometimes' invalid" in msg
    msg = lab.call_in(lab.host_ns, _refused, cfg, st,
                      binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="NONE", IP="192.0.2.5"))  # fmt: skip
    assert msg == "accepted"  # an explicit IP needs no learning


# ----------------------------------------------------------------------------- dhcp


def test_dhcp_learns_the_acked_address_not_a_static_one_and_follows_release(lab, daemon):
    br = dhcp_network(lab, daemon)
    a = lab.guest("a", ip=None, bridge=br)
    daemon.start()
    daemon.client.nwfilter_binding_create(
        binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="dhcp")
    )
    assert daemon.client.call("daemon.info")["learning"] == {a.port: "dhcp"}
    # a static address is not learned, and until a lease exists only DHCP passes
    lab.run(a, "ip", "addr", "add", "192.0.2.60/24", "dev", a.iface)
    assert not lab.ping(a, br, timeout=1.0)
    assert not lab.probe(a, udp(a.mac, br, "192.0.2.60"), br, timeout=0.3)
    assert learned(daemon, a.port) == []
    lab.run(a, "ip", "addr", "del", "192.0.2.60/24", "dev", a.iface)
    # a DHCP lease is learned; the guest's traffic with it flows, other addresses do not
    ip, server = dhcp_lease(lab, a)
    assert server == SERVER
    wait_learned(daemon, a.port, [ip])
    assert lab.ping(a, br, timeout=2.0)
    assert not lab.probe(a, udp(a.mac, br, "192.0.2.60"), br, timeout=0.3)
    assert daemon.client.call("daemon.info")["learning"] == {a.port: "dhcp"}  # still snooping
    # releasing the lease takes the address away again
    dhcp_release(lab, a, ip, server)
    wait_learned(daemon, a.port, [])
    assert not lab.ping(a, br, timeout=1.0)


def test_dhcpserver_ignores_an_ack_from_a_rogue_server(lab, daemon):
    br = dhcp_network(lab, daemon)
    a = lab.guest("a", ip=None, bridge=br)
    rogue = lab.guest("rogue", ip="192.0.2.12/24", bridge=br)
    daemon.start()
    daemon.client.nwfilter_binding_create(
        binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="dhcp", DHCPSERVER=SERVER)
    )
    # before a lease: the interim rules let replies through only from DHCPSERVER
    assert not lab.probe(rogue, rogue_ack(rogue, a, "192.0.2.77"), a, timeout=0.5)
    time.sleep(0.3)
    assert learned(daemon, a.port) == []
    ip, _server = dhcp_lease(lab, a)
    wait_learned(daemon, a.port, [ip])
    # with the lease, the guest's filter lets the rogue's ACK reach it; the snooper ignores it
    lab.send(rogue, rogue_ack(rogue, a, "192.0.2.78"))
    daemon.wait_log("DHCPACK for 192.0.2.78 ignored: server 192.0.2.12 is not in DHCPSERVER")
    assert learned(daemon, a.port) == [ip]
    assert lab.probe(a, udp(a.mac, br, ip), br, timeout=1.0)  # the pass control
    assert not lab.probe(a, udp(a.mac, br, "192.0.2.78"), br, timeout=0.3)


def test_dhcp_without_dhcpserver_takes_any_servers_ack(lab, daemon):
    br = lab.bridge(ip=f"{SERVER}/24")
    a = lab.guest("a", ip=None, bridge=br)
    other = lab.guest("other", ip="192.0.2.12/24", bridge=br)
    daemon.start()
    daemon.client.nwfilter_binding_create(
        binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="dhcp")
    )
    assert lab.probe(other, rogue_ack(other, a, "192.0.2.79"), a, timeout=1.0)
    wait_learned(daemon, a.port, ["192.0.2.79"])


def test_an_expired_lease_is_forgotten(lab, daemon):
    br = lab.bridge(ip=f"{SERVER}/24")
    a = lab.guest("a", ip=None, bridge=br)
    server = lab.guest("server", ip="192.0.2.12/24", bridge=br)
    daemon.start()
    daemon.client.nwfilter_binding_create(
        binding_xml(a.port, a.mac, "clean-traffic", CTRL_IP_LEARNING="dhcp")
    )
    lab.send(server, rogue_ack(server, a, "192.0.2.80", lease=2))
    wait_learned(daemon, a.port, ["192.0.2.80"])
    lab.run(a, "ip", "addr", "add", "192.0.2.80/24", "dev", a.iface)
    assert lab.ping(a, server)
    wait_learned(daemon, a.port, [], timeout=5.0)
    # dumpxml drops the lease at its expiry time; the kernel follows when the daemon's expiry
    # event has recompiled the port (later under load): wait for that, bounded
    back = wait_until(lambda: not lab.ping(a, server, timeout=0.5), 5.0)
    assert back is not None, "still forwarded: not back to the DHCP-only rules"
