"""nwguard with a real firewalld (Debian's package) in a sandbox, with both its backends.

The sandbox (:mod:`.fwd`): a private D-Bus system bus and firewalld in the lab's host
namespace, firewalld in its own mount namespace on a copy of ``/etc/firewalld``; nwguard and
nwguardd reach it through ``NWGUARD_FIREWALLD_BUS``. Guests get real DHCP and DNS answers
from the network's dnsmasq and talk to an "outside" namespace routed by the host, so every
packet has to pass nwguard's tables and firewalld's.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from nwguard.host.firewalld import BUS_ENV

from . import test_network_modes as modes
from .fwd import Sandbox, unavailable_reason
from .lab import Lab, Node, _echo_request, kernel_unavailable_reason
from .nwgd import Daemon
from .test_network_modes import (
    DOMAIN,
    HOST_IP,
    OUTSIDE_IP,
    SUBNET,
    Nwg,
    _dhcp_exchange,
    dhcp,
    network_xml,
    peer_seen,
    plug_guest,
    resolve,
)

pytestmark = [
    pytest.mark.kernel,
    # nwguard on nftables: with its iptables backend nwguard's LIBVIRT_INP rules sit in the
    # same INPUT chain as firewalld's iptables rules and accept DHCP/DNS first (libvirt's
    # old layout), so the default-zone controls below would not hold
    pytest.mark.nftables_only,
    pytest.mark.skipif(
        kernel_unavailable_reason() is not None, reason=str(kernel_unavailable_reason())
    ),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

BACKENDS = ["nftables", "iptables"]
nwg = modes.nwg  # the fixture


def sandbox(lab: Lab, monkeypatch: pytest.MonkeyPatch, backend: str, zones: bool) -> Sandbox:
    sb = Sandbox(lab, lab.host(forwarding=True), backend=backend, zones=zones)
    monkeypatch.setenv(BUS_ENV, sb.address)
    return sb


@pytest.fixture
def fw_nft(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    sb = sandbox(lab, monkeypatch, "nftables", zones=True)
    try:
        yield sb.start()
    finally:
        sb.close()


def _guest_works(lab: Lab, g: Node, lease: dict[str, str], outside: Node) -> bool:
    """DNS from the network's dnsmasq and a masqueraded connection to the outside."""
    return (
        resolve(lab, g, lease["dns"], f"files.{DOMAIN}") == f"{SUBNET}.250"
        and peer_seen(lab, g, outside, OUTSIDE_IP) == HOST_IP
    )


def _renews(lab: Lab, g: Node, lease: dict[str, str]) -> bool:
    """A DHCPREQUEST for the guest's lease is ACKed (what a renewal gets)."""
    xid = int.from_bytes(os.urandom(4), "big")
    req = [("message-type", "request"), ("requested_addr", lease["ip"]),
           ("server_id", lease["router"]), ("hostname", "g")]  # fmt: skip
    ack, _ = _dhcp_exchange(lab, g, xid, req, 5)
    return ack is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_nat_network_in_the_libvirt_zone_gets_dhcp_dns_and_masquerades(
    lab: Lab,
    nwg: Nwg,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    sb = sandbox(lab, monkeypatch, backend, zones=True).start()
    try:
        assert sb.client.backend() == backend
        bridge = lab.devname("fbr")
        outside = lab.outside("out", ip=OUTSIDE_IP, host_ip=HOST_IP, gateway=HOST_IP)
        nwg.define("n", network_xml("n", bridge, "nat"))
        nwg("net-start", "n")
        assert sb.client.zone_of_interface(bridge) == "libvirt"
        g = plug_guest(lab, "g", bridge)
        lease = dhcp(lab, g, "g")
        assert _guest_works(lab, g, lease, outside)
        # the control: in firewalld's default zone the same guest loses DNS (firewalld's
        # rules are real and in force), back in libvirt it has it again
        sb.client.add_interface("public", bridge)
        assert resolve(lab, g, lease["dns"], f"files.{DOMAIN}") is None
        sb.client.add_interface("libvirt", bridge)
        assert _guest_works(lab, g, lease, outside)
        nwg("net-destroy", "n")
        assert sb.client.zone_of_interface(bridge) is None
        assert nwg.leftovers(bridge) == []
    finally:
        sb.close()


def test_a_named_zone_is_used_and_a_missing_one_is_an_error(
    lab: Lab,
    nwg: Nwg,
    fw_nft: Sandbox,
) -> None:
    bridge = lab.devname("fbr")
    nwg.define(
        "t", network_xml("t", bridge, "nat").replace("delay='0'", "delay='0' zone='trusted'")
    )
    nwg("net-start", "t")
    assert fw_nft.client.zone_of_interface(bridge) == "trusted"
    nwg("net-destroy", "t")
    routed = lab.devname("fbr")
    nwg.define("r", network_xml("r", routed, "route", subnet="192.0.4"))
    nwg("net-start", "r")  # firewalld has zone libvirt-routed and policy libvirt-routed-out
    assert fw_nft.client.zone_of_interface(routed) == "libvirt-routed"
    nwg("net-destroy", "r")
    assert fw_nft.client.zone_of_interface(routed) is None
    bad = lab.devname("fbr")
    nwg.define("x", network_xml("x", bad, "nat", subnet="192.0.3").replace(
        "delay='0'", "delay='0' zone='nosuch'"))  # fmt: skip
    out = nwg("net-start", "x", check=False)
    assert out.returncode != 0
    assert "zone nosuch requested for network x does not exist in firewalld" in out.stderr
    assert nwg.leftovers(bad) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_zone_missing_refuses_the_start_leaves_nothing_and_firewalld_install_fixes_it(
    lab: Lab, nwg: Nwg, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Both backends refuse (a deviation from older libvirt's iptables warning: the control
    in the nat test shows firewalld's default zone rejecting DNS with either backend)."""
    sb = sandbox(lab, monkeypatch, backend, zones=False).start()
    try:
        bridge = lab.devname("fbr")
        nwg.define("n", network_xml("n", bridge, "nat"))
        out = nwg("net-start", "n", check=False)
        assert out.returncode != 0
        assert f"({backend} backend) has no 'libvirt' zone" in out.stderr
        assert "nwguard firewalld-install" in out.stderr
        assert nwg.leftovers(bridge) == []
        status = json.loads(nwg("firewalld-status", "--json").stdout)
        assert status["backend"] == backend and status["present"]["libvirt"] is False
        # the command the error names makes the same start work
        inst = nwg.lab.run(None, nwg_path(), "firewalld-install", "--config-dir", str(sb.etc))
        assert "firewalld: reloaded" in inst.stdout
        assert json.loads(nwg("firewalld-status", "--json").stdout)["present"] == {
            "libvirt": True, "libvirt-routed": True, "libvirt-routed-out": True,
        }  # fmt: skip
        nwg("net-start", "n")
        assert sb.client.zone_of_interface(bridge) == "libvirt"
    finally:
        sb.close()


def pinger(dst: str, seconds: float, every: float = 0.05) -> dict[str, float]:
    """Run inside a guest: ICMP echoes to ``dst`` for ``seconds``; how many were answered and
    the longest time without an answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    start = last = time.monotonic()
    sent = answered = 0
    gap = 0.0
    while (now := time.monotonic()) - start < seconds:
        sock.sendto(_echo_request(socket.AF_INET, ident), (dst, 0))
        sent += 1
        end = now + every
        while (left := end - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(65535)
            data = data[(data[0] & 0x0F) * 4 :]
            if data[0] == 0 and struct.unpack("!H", data[4:6])[0] == ident:
                answered += 1
                t = time.monotonic()
                gap, last = max(gap, t - last), t
        time.sleep(max(end - time.monotonic(), 0))
    sock.close()
    return {"sent": sent, "answered": answered, "gap": max(gap, time.monotonic() - last)}


def _back_in_zone(sb: Sandbox, bridge: str, within: float) -> bool:
    end = time.monotonic() + within
    while sb.client.zone_of_interface(bridge) != "libvirt":
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def nwg_path() -> str:
    from .test_network_modes import NWGUARD

    return NWGUARD


@pytest.mark.parametrize("backend", BACKENDS)
def test_reload_and_restart_while_a_guest_pings_out_the_bridge_is_back_within_a_second(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    sb = sandbox(lab, monkeypatch, backend, zones=True).start()
    d = Daemon(lab)
    try:
        d.start()
        bridge = lab.devname("fbr")
        outside = lab.outside("out", ip=OUTSIDE_IP, host_ip=HOST_IP, gateway=HOST_IP)
        d.client.net_define(network_xml("n", bridge, "nat"))
        d.client.net_start("n")
        g = plug_guest(lab, "g", bridge)
        lease = dhcp(lab, g, "g")
        # the control: without nwguardd a reload leaves the bridge in no zone (firewalld's
        # default one) and the guest without DNS; a starting nwguardd puts it back
        d.stop()
        assert sb.firewall_cmd("--reload").returncode == 0
        assert sb.client.zone_of_interface(bridge) is None
        assert resolve(lab, g, lease["dns"], f"files.{DOMAIN}") is None
        d.start()
        assert _back_in_zone(sb, bridge, 1.0), "nwguardd's start did not re-add the bridge"
        ping = lab.start_in(g, pinger, OUTSIDE_IP, 6.0)
        time.sleep(1.0)
        for what, act in (("reload", lambda: sb.firewall_cmd("--reload")),
                          ("restart", sb.restart)):  # fmt: skip
            act()
            t0 = time.monotonic()
            assert _back_in_zone(sb, bridge, 1.0), f"after {what}: bridge not back in its zone"
            took = time.monotonic() - t0
            print(f"{backend} {what}: bridge back in zone libvirt {took * 1000:.0f} ms after")
            assert _guest_works(lab, g, lease, outside), f"after {what}: no DNS or NAT"
            assert _renews(lab, g, lease), f"after {what}: no DHCP renewal"
            time.sleep(1.0)
        log = d.log()  # the rules were compared, not rebuilt: nothing of nwguard's changed
        for event in ("reloaded", "started"):
            assert f"ruleset as expected (firewalld {event}" in log, log[-3000:]
        assert "restored nwguard's rules" not in log and "re-applied nwguard's rules" not in log
        pings = ping.result(20)
        print(f"{backend}: guest pinged out throughout: {pings}")
        assert pings["answered"] > pings["sent"] * 0.5 and pings["gap"] < 2.0, pings
        d.client.net_destroy("n")
        assert d.client.net_list() == []
        sb.restart()  # what is destroyed stays destroyed
        time.sleep(0.5)
        assert sb.client.zone_of_interface(bridge) is None
        tables = lab.run(lab.host_ns, "nft", "list", "tables").stdout
        assert "nwguard_net_" not in tables
    finally:
        d.close()
        sb.close()
