"""Bridged IP passes the IP hooks (and conntrack) only on bridges whose ports need them
(issue 13): a bridge of stateless ports keeps the short Ethernet-layer path and its ports are
still filtered; a bridge with a stateful port gets its own ``nf_call_iptables`` and the state
rules work there; the bridge is released when that port goes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from .lab import Bridge, Lab, Node
from .nwg import Nwguard, deliveries

pytestmark = pytest.mark.kernel

FOREIGN_IP = "192.0.2.249"
NO = 0.5
TCP_STATE = (
    "<filter name='tcp-state' chain='root'><filterref filter='clean-traffic'/>"
    "<rule action='accept' direction='out'><tcp state='NEW,ESTABLISHED'/></rule>"
    "<rule action='accept' direction='in'><tcp state='ESTABLISHED'/></rule>"
    "<rule action='drop' direction='inout' priority='1000'><tcp/></rule></filter>"
)


@pytest.fixture
def ng(lab: Lab, tmp_path: Path) -> Nwguard:
    return Nwguard(lab, tmp_path)


def hooks(lab: Lab, br: Bridge) -> tuple[int, int]:
    """The bridge's own nf_call_iptables / nf_call_ip6tables."""
    out = lab.run(lab.host_ns, "ip", "-d", "-j", "link", "show", "dev", br.name).stdout
    data = json.loads(out)[0]["linkinfo"]["info_data"]
    return data["nf_call_iptables"], data["nf_call_ip6tables"]


def global_hooks(lab: Lab) -> tuple[str, str]:
    return (
        lab.read_sysctl(lab.host_ns, "net.bridge.bridge-nf-call-iptables"),
        lab.read_sysctl(lab.host_ns, "net.bridge.bridge-nf-call-ip6tables"),
    )


def spoof_check(lab: Lab, src: Node, dst: Node) -> dict[str, bool]:
    def udp(ip: str, tag: str) -> Ether:
        return (
            Ether(src=src.mac, dst=dst.mac) / IP(src=ip, dst=dst.ip) / UDP(sport=40000, dport=9)
            / Raw(f"nwguard-hooks {tag}".encode())
        )  # fmt: skip

    return deliveries(lab, src, {"own": udp(src.ip, "own"), "spoofed": udp(FOREIGN_IP, "s")}, dst)


def test_only_the_bridge_of_a_stateful_port_passes_the_ip_hooks(lab: Lab, ng: Nwguard) -> None:
    plain, stateful = lab.bridge(), lab.bridge()
    a, b = lab.guest("a", bridge=plain), lab.guest("b", bridge=plain)
    c, d = lab.guest("c", bridge=stateful), lab.guest("d", bridge=stateful)
    ng.define(TCP_STATE)
    ng.bind(a, "clean-traffic", IP=a.ip)
    ng.bind(c, "tcp-state", IP=c.ip)
    assert global_hooks(lab) == ("0", "0")  # the lab's host had them on
    assert hooks(lab, plain) == (0, 0) and hooks(lab, stateful) == (1, 1)
    # the stateless port is still filtered, on the short path
    assert spoof_check(lab, a, b) == {"own": True, "spoofed": False}
    # the stateful rules see the connection state: out and its replies pass, new inbound not
    assert lab.tcp_try(c, d, 8080) == "ok"
    assert lab.tcp_try(d, c, 8080, timeout=NO) == "timeout"
    ng.unbind(c)
    assert hooks(lab, stateful) == (0, 0)  # released with its last stateful port
    assert lab.tcp_try(d, c, 8080) == "ok"  # and c is unfiltered now
    assert spoof_check(lab, a, b) == {"own": True, "spoofed": False}


def test_a_filter_redefined_to_need_state_turns_its_bridge_on(lab: Lab, ng: Nwguard) -> None:
    br = lab.bridge()
    a, b = lab.guest("a", bridge=br), lab.guest("b", bridge=br)
    ng.define(TCP_STATE.replace("tcp-state", "guard").split("<rule")[0] + "</filter>")
    ng.bind(a, "guard", IP=a.ip)
    assert hooks(lab, br) == (0, 0)
    assert lab.tcp_try(b, a, 8080) == "ok"
    ng.define(TCP_STATE.replace("tcp-state", "guard"))
    assert hooks(lab, br) == (1, 1)
    assert lab.tcp_try(a, b, 8081) == "ok"
    assert lab.tcp_try(b, a, 8082, timeout=NO) == "timeout"


def ip_layer(lab: Lab) -> tuple[set[str], bool]:
    """nwguard's bridge base chains, and whether ``inet nwguard`` exists."""
    out = lab.run(lab.host_ns, "nft", "-j", "list", "table", "bridge", "nwguard").stdout
    bases = {
        o["chain"]["name"] for o in json.loads(out)["nftables"]
        if "chain" in o and "hook" in o["chain"]
    }  # fmt: skip
    inet = lab.run(lab.host_ns, "nft", "list", "table", "inet", "nwguard", check=False)
    return bases, inet.returncode == 0


def test_the_ip_layer_base_chains_exist_only_while_a_port_needs_them(lab: Lab, ng: Nwguard) -> None:
    """A frame of an Ethernet-layer port crosses two base chains of nwguard's (issue 13): the
    IP-layer ones and ``inet nwguard`` come with the first port that needs them and go with
    the last, and the Ethernet-layer filtering holds throughout."""
    br = lab.bridge()
    a, b = lab.guest("a", bridge=br), lab.guest("b", bridge=br)
    c, d = lab.guest("c", bridge=br), lab.guest("d", bridge=br)
    ng.define(TCP_STATE)
    ng.bind(a, "clean-traffic", IP=a.ip)
    assert ip_layer(lab) == ({"pre_l2", "post_l2"}, False)
    assert spoof_check(lab, a, b) == {"own": True, "spoofed": False}
    ng.bind(c, "tcp-state", IP=c.ip)
    assert ip_layer(lab) == ({"pre_l2", "post_l2", "pre_l4", "fwd_l4", "out_l4"}, True)
    assert lab.tcp_try(c, d, 8080) == "ok"  # the state rules work: out and its replies
    assert lab.tcp_try(d, c, 8080, timeout=NO) == "timeout"
    ng.bind(d, "tcp-state", IP=d.ip)
    ng.unbind(c)  # d still needs them
    assert ip_layer(lab)[1] and lab.tcp_try(c, d, 8083, timeout=NO) == "timeout"
    ng.unbind(d)
    assert ip_layer(lab) == ({"pre_l2", "post_l2"}, False)
    assert lab.tcp_try(d, c, 8084) == "ok"  # c and d unfiltered now
    assert spoof_check(lab, a, b) == {"own": True, "spoofed": False}
