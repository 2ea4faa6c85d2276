"""nwguardd on the iptables backend: it says so, and it repairs flushed or deleted chains
within a second, leaving other people's rules alone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from .lab import Lab, Node
from .nwg import binding_xml
from .nwgd import Daemon, wait_until
from .test_daemon import spoof_dropped

pytestmark = pytest.mark.kernel

L4 = "<filter name='no-smtp'><rule action='drop' direction='out'><tcp dstportstart='25'/></rule></filter>"


@pytest.fixture
def daemon(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "iptables")
    d = Daemon(lab)
    try:
        yield d
    finally:
        d.close()


def save(lab: Lab, tool: str) -> str:
    return lab.run(
        lab.host_ns, f"{tool}-nft-save", *(["-t", "filter"] if tool != "ebtables" else [])
    ).stdout


def guests(lab: Lab, daemon: Daemon) -> tuple[Node, Node]:
    a, b = lab.guest("a"), lab.guest("b")
    daemon.start()
    daemon.client.nwfilter_define(L4)
    daemon.client.nwfilter_binding_create(binding_xml(a.port, a.mac, "clean-traffic", IP=a.ip))
    daemon.client.nwfilter_binding_create(binding_xml(b.port, b.mac, "no-smtp"))
    assert spoof_dropped(lab, a, b)
    assert f"-A FI-{b.port}" in save(lab, "iptables")
    return a, b


def test_daemon_status_names_the_iptables_backend(lab, daemon):
    daemon.start()
    out = daemon.cli("daemon-status", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backend"] == {
        "name": "iptables", "variant": "nft", "source": "NWGUARD_FIREWALL_BACKEND",
    }  # fmt: skip


def test_flushes_are_repaired_within_a_second_and_others_rules_stay(lab, daemon):
    a, b = guests(lab, daemon)
    lab.run(lab.host_ns, "ebtables-nft", "-t", "nat", "-F")
    lab.run(lab.host_ns, "iptables-nft", "-F")
    t0 = time.monotonic()
    # someone else's rules, made right after the flush: the repair must leave them
    lab.run(
        lab.host_ns, "ebtables-nft", "-t", "nat", "-A", "PREROUTING", "-p", "0x88b5", "-j", "DROP"
    )
    lab.run(
        lab.host_ns, "iptables-nft", "-A", "INPUT", "-p", "udp", "--dport", "5555", "-j", "DROP"
    )
    assert wait_until(
        lambda: f"-i {a.port} -j libvirt-I-{a.port}" in save(lab, "ebtables"), timeout=1.0
    )
    assert wait_until(lambda: f"-A FI-{b.port} " in save(lab, "iptables"), timeout=1.0)
    assert time.monotonic() - t0 < 1.0 + 0.3  # (+ the control probe's own wait)
    assert spoof_dropped(lab, a, b)
    assert "-A PREROUTING -p 0x88b5 -j DROP" in save(lab, "ebtables")
    assert "-A INPUT -p udp -m udp --dport 5555 -j DROP" in save(lab, "iptables")
    log = daemon.wait_log("restored nwguard's iptables")  # (it saw them gone)
    assert f"chain libvirt-I-{a.port} has 0 of" in log


def test_a_deleted_sub_chain_is_repaired_within_a_second(lab, daemon):
    a, b = guests(lab, daemon)
    chain = f"I-{a.port}-ipv4-ip"
    assert f":{chain} RETURN" in save(lab, "ebtables")
    cut = f"*nat\n-D libvirt-I-{a.port} -p IPv4 -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n"
    lab.run(lab.host_ns, "ebtables-nft-restore", "--noflush", input=cut)
    t0 = time.monotonic()
    assert wait_until(lambda: f":{chain} RETURN" in save(lab, "ebtables"), timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert f"chain {chain} missing" in daemon.wait_log("restored nwguard's iptables")
    assert spoof_dropped(lab, a, b)


NETWORK = """<network><name>rt</name><forward mode='route'/><bridge name='{br}' stp='off'/>
<ip address='203.0.113.1' prefix='24'/></network>"""


def chain_rules(lab: Lab, chain: str) -> list[str]:
    return [ln for ln in save(lab, "iptables").splitlines() if ln.startswith(f"-A {chain} ")]


def test_a_deleted_network_rule_is_repaired_within_a_second_and_others_rules_stay(lab, daemon):
    a, b = guests(lab, daemon)
    br = lab.devname("nbr")
    daemon.client.net_define(NETWORK.format(br=br))
    daemon.client.net_start("rt")
    try:
        ours = f"-A LIBVIRT_FWO -s 203.0.113.0/24 -i {br} -j ACCEPT"
        assert ours in chain_rules(lab, "LIBVIRT_FWO")
        other = ["-A", "LIBVIRT_FWO", "-s", "198.51.100.0/24", "-j", "ACCEPT"]
        lab.run(lab.host_ns, "iptables-nft", *other)  # someone else's rule in the same chain
        before = chain_rules(lab, "LIBVIRT_FWO")
        lab.run(lab.host_ns, "iptables-nft", "-D", *ours.split()[1:])
        t0 = time.monotonic()
        assert ours not in chain_rules(lab, "LIBVIRT_FWO")  # control: it was gone
        assert wait_until(lambda: ours in chain_rules(lab, "LIBVIRT_FWO"), timeout=1.0)
        assert time.monotonic() - t0 < 1.0
        assert chain_rules(lab, "LIBVIRT_FWO") == before  # in place, once, the other kept
        assert f"network rt: LIBVIRT_FWO: -s 203.0.113.0/24 -i {br} -j ACCEPT missing" in (
            daemon.wait_log("restored nwguard's iptables")
        )
        assert spoof_dropped(lab, a, b)  # the ports' rules were left as they were
    finally:
        daemon.client.net_destroy("rt")
    assert br not in save(lab, "iptables")


def test_nwguardd_moves_ports_and_networks_when_firewall_backend_changed(lab, daemon, monkeypatch):
    lab.host()
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "nftables")
    a, b = lab.guest("a"), lab.guest("b")
    daemon.start()
    daemon.client.nwfilter_define(L4)
    daemon.client.nwfilter_binding_create(binding_xml(a.port, a.mac, "clean-traffic", IP=a.ip))
    daemon.client.nwfilter_binding_create(binding_xml(b.port, b.mac, "no-smtp"))
    br = lab.devname("nbr")
    daemon.client.net_define(NETWORK.format(br=br))
    daemon.client.net_start("rt")
    try:
        tables = lab.run(lab.host_ns, "nft", "list", "tables").stdout
        assert "bridge nwguard" in tables and f"nwguard_net_{br}" in tables
        assert spoof_dropped(lab, a, b)
        daemon.stop()
        monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "iptables")  # the setting changed
        daemon.start()
        tables = lab.run(lab.host_ns, "nft", "list", "tables").stdout
        assert "nwguard" not in tables, tables  # nothing left on the old backend
        assert f"-i {a.port} -j libvirt-I-{a.port}" in save(lab, "ebtables")
        assert f"-A FI-{b.port} " in save(lab, "iptables")
        assert f"-A LIBVIRT_FWX -i {br} -o {br} -j ACCEPT" in save(lab, "iptables")
        assert spoof_dropped(lab, a, b)
        assert "firewall backend nftables -> iptables: 2 port(s)" in daemon.new_log()
        daemon.stop()
        daemon.start()  # the same backend again: nothing moves
        assert "firewall backend" not in daemon.new_log()
        assert spoof_dropped(lab, a, b)
    finally:
        daemon.client.net_destroy("rt")
    assert br not in save(lab, "iptables")
