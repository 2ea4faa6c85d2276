"""The iptables backend's legacy variant (``iptables-legacy``, ``ip6tables-legacy``,
``ebtables-legacy``) on this kernel.

This kernel has the legacy iptables and ip6tables tables (``CONFIG_IP_NF_IPTABLES_LEGACY``,
``CONFIG_IP6_NF_IPTABLES_LEGACY``: filter, nat, mangle, raw) but not the legacy ebtables ones
(``CONFIG_BRIDGE_NF_EBTABLES_LEGACY`` is not set: every ``ebtables-legacy`` table answers "The
kernel doesn't support the ebtables 'nat' table."). So what runs here: filters with IP-layer
rules only, and virtual networks; a filter with Ethernet-layer rules is refused with the
tool's message and changes nothing (README, "The legacy variant").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from .lab import Lab
from .nwg import Nwguard, binding_xml, deliveries

pytestmark = pytest.mark.kernel

NO_SMTP = "<filter name='no-smtp'><rule action='drop' direction='out'><tcp dstportstart='25'/></rule></filter>"
NETWORK = """<network><name>leg</name><forward mode='route'/><bridge name='{br}' stp='off'/>
<ip address='203.0.113.1' prefix='24'/></network>"""


@pytest.fixture
def ng(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Nwguard:
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "iptables")
    monkeypatch.setenv("NWGUARD_IPTABLES_VARIANT", "legacy")
    return Nwguard(lab, tmp_path)


def saved(lab: Lab, tool: str, table: str = "filter") -> str:
    return lab.run(lab.host_ns, f"{tool}-save", "-t", table).stdout


def test_an_ip_layer_filter_is_enforced_with_the_legacy_tools(lab: Lab, ng: Nwguard) -> None:
    lab.bridge(ip="192.0.2.1/24")
    a, b = lab.guest("a"), lab.guest("b")
    ng.define(NO_SMTP)
    ng.bind(a, "no-smtp")
    assert f"-A FI-{a.port} -p tcp -m tcp --dport 25 -j DROP" in saved(lab, "iptables-legacy")
    assert a.port not in saved(lab, "iptables-nft")  # not the other variant's tables
    eth, ip = Ether(src=a.mac, dst=b.mac), IP(src=a.ip, dst=b.ip)
    frames = {"smtp": eth / ip / TCP(sport=43000, dport=25, flags="S"),
              "other": eth / ip / TCP(sport=43000, dport=26, flags="S")}  # fmt: skip
    assert deliveries(lab, a, frames, b) == {"smtp": False, "other": True}
    ng.unbind(a)
    assert a.port not in saved(lab, "iptables-legacy")
    assert deliveries(lab, a, {"smtp": frames["smtp"]}, b) == {"smtp": True}


def test_an_ethernet_layer_filter_is_refused_with_the_tools_message(lab: Lab, ng: Nwguard) -> None:
    lab.bridge(ip="192.0.2.1/24")
    a = lab.guest("a")
    rules = ("iptables-legacy", "-S")  # (save would show packet counters)
    before = lab.run(lab.host_ns, *rules).stdout
    kind, message = ng.refusal(
        "nwfilter_binding_create", binding_xml(a.port, a.mac, "clean-traffic", IP=a.ip)
    )
    assert kind == "ApplyError", (kind, message)
    assert "The kernel doesn't support the ebtables 'nat' table." in message
    assert ng.bindings() == [] and lab.run(lab.host_ns, *rules).stdout == before


def test_a_network_starts_and_stops_with_the_legacy_tools(lab: Lab, ng: Nwguard) -> None:
    lab.host()
    br = lab.devname("nbr")
    ng.call("net_define", NETWORK.format(br=br))
    ng.call("net_start", "leg")
    try:
        assert f"-A LIBVIRT_FWX -i {br} -o {br} -j ACCEPT" in saved(lab, "iptables-legacy")
        assert f"-A LIBVIRT_FWO -s 203.0.113.0/24 -i {br} -j ACCEPT" in saved(
            lab, "iptables-legacy"
        )
        assert br not in saved(lab, "iptables-nft")
    finally:
        ng.call("net_destroy", "leg")
    assert br not in saved(lab, "iptables-legacy")
