"""``nwguard backend-switch``: ports and networks move between nftables and iptables with
traffic flowing; spoofed frames sent during the switches never arrive, legitimate ones all
do, and the old backend keeps nothing of nwguard's."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from .lab import Lab
from .nwg import Nwguard, deliveries, iptables_listing
from .test_rebuild import _count, _flood, _wait_for, guard, legit, spoofed

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")
GUESTS = 10


def switch(lab: Lab, ng: Nwguard, name: str) -> str:
    argv = [NWGUARD, "--config-dir", ng.config, "--state-dir", ng.state, "backend-switch", name]
    out = lab.run(lab.host_ns, *argv, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def nft_tables(lab: Lab) -> str:
    return lab.run(lab.host_ns, "nft", "list", "tables").stdout


@pytest.fixture
def ng(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Nwguard:
    monkeypatch.delenv("NWGUARD_FIREWALL_BACKEND", raising=False)  # nwguard.conf decides
    monkeypatch.delenv("NWGUARD_IPTABLES_VARIANT", raising=False)
    return Nwguard(lab, tmp_path)


def test_switching_under_traffic_never_lets_a_spoofed_frame_through(lab, ng, tmp_path):
    guests = [lab.guest(f"g{i}") for i in range(GUESTS)]
    a, b = guests[0], guests[1]
    ng.define(guard(1))
    for g in guests:
        ng.bind(g, "guard", IP=g.ip)
    frames = {**spoofed(a, b), "legit": legit(a, b)}
    assert "table bridge nwguard" in nft_tables(lab)  # unset: nftables
    assert deliveries(lab, a, {"legit": frames["legit"], "ip": frames["ip"]}, b) == {
        "legit": True, "ip": False,
    }  # fmt: skip
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    receiver = lab.start_in(b, _count, b.iface, str(ready), str(stop), 60.0)
    _wait_for(ready)
    sender = lab.start_in(a, _flood, a.iface, frames, str(stop), 60.0)
    time.sleep(0.2)
    outputs, seen = [], []
    for name in ("iptables", "nftables", "iptables"):
        outputs.append(switch(lab, ng, name))
        seen.append((nft_tables(lab), str(iptables_listing(lab))))
        time.sleep(0.1)
    stop.touch()
    sent, got = sender.result(30), receiver.result(30)

    assert f"{GUESTS} port(s)" in outputs[0], outputs
    for (tables, listing), name in zip(seen, ("iptables", "nftables", "iptables"), strict=True):
        on_ipt = name == "iptables"
        assert ("nwguard" in tables) is not on_ipt, tables  # the old backend's rules are gone
        assert all((f"libvirt-I-{g.port}" in listing) is on_ipt for g in guests), listing
    assert sum(sent[k] for k in spoofed(a, b)) > 1000, sent
    assert not {k: n for k, n in got.items() if k.startswith("spoof")}, (got, sent)
    assert got["legit"] == sent["legit"], (got, sent)
    conf = (Path(ng.config) / "nwguard.conf").read_text()
    assert conf == 'firewall_backend = "iptables"\niptables_variant = "nft"\n'
    # later commands use the backend the file names: an unbind removes the iptables chains
    ng.unbind(a)
    assert f"libvirt-I-{a.port}" not in str(iptables_listing(lab))
    assert f"libvirt-I-{b.port}" in str(iptables_listing(lab))


NETWORK = """<network><name>sw</name><forward mode='route'/><bridge name='{br}' stp='off'/>
<ip address='203.0.113.1' prefix='24'/></network>"""


def test_an_active_network_moves_and_is_destroyed_on_the_new_backend(lab, ng):
    lab.host()
    br = lab.devname("nbr")
    ng.call("net_define", NETWORK.format(br=br))
    ng.call("net_start", "sw")
    try:
        assert f"nwguard_net_{br}" in nft_tables(lab)
        switch(lab, ng, "iptables")
        save = lab.run(lab.host_ns, "iptables-nft-save", "-t", "filter").stdout
        assert f"-A LIBVIRT_FWX -i {br} -o {br} -j ACCEPT" in save
        assert f"nwguard_net_{br}" not in nft_tables(lab)
        switch(lab, ng, "nftables")
        assert f"nwguard_net_{br}" in nft_tables(lab)
        save = lab.run(lab.host_ns, "iptables-nft-save", "-t", "filter").stdout
        assert br not in save
        switch(lab, ng, "iptables")
    finally:
        ng.call("net_destroy", "sw")
    assert br not in lab.run(lab.host_ns, "iptables-nft-save", "-t", "filter").stdout
    assert f"nwguard_net_{br}" not in nft_tables(lab)
