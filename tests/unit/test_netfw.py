"""The network firewall compiler: golden batches per mode, determinism, invariants.

Golden files live in ``tests/golden/network/<case>.json``; the tests only compare. After an
intended change, ``make golden`` (scripts/regen_golden.py) rewrites them: review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nwguard.backends.nft.render import nft_json
from nwguard.compile import network as netfw
from nwguard.xmlio.network_xml import parse_network

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "network"

V4 = "<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>"
V6 = "<ip family='ipv6' address='fd00:122::1' prefix='64'/>"


def _net(body: str, name: str = "default", bridge: str = "virbr0") -> str:
    return f"<network><name>{name}</name><bridge name='{bridge}'/>{body}</network>"


CASES = {
    "isolated": _net(V4),
    "isolated-ipv6-yes": _net(V4).replace("<network>", "<network ipv6='yes'>"),
    "nat-default": _net("<forward mode='nat'/>" + V4),
    "nat-dev-snat-ports": _net(
        "<forward mode='nat' dev='eth0'><nat><address start='198.51.100.1' end='198.51.100.9'/>"
        "<port start='2000' end='3000'/></nat></forward>" + V4
    ),
    "nat-single-snat-address": _net(
        "<forward mode='nat'><nat><address start='198.51.100.7' end='198.51.100.7'/></nat></forward>"
        + V4
    ),
    "nat-ipv6-routed": _net("<forward mode='nat'/>" + V4 + V6),
    "nat-ipv6-masquerade": _net("<forward mode='nat'><nat ipv6='yes'/></forward>" + V4 + V6),
    "route": _net("<forward mode='route'/>" + V4 + V6),
    "route-dev": _net("<forward mode='route' dev='eth1'/>" + V4),
    "open": _net("<forward mode='open'/>" + V4),
}


def render(case: str) -> str:
    """One command per line: valid JSON whose diffs show whole rules."""
    cmds = nft_json(netfw.network_batch(parse_network(CASES[case])))["nftables"]
    lines = ",\n".join(" " + json.dumps(c, sort_keys=True) for c in cmds)
    return '{"nftables": [\n' + lines + ("\n" if cmds else "") + "]}\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    path = GOLDEN / f"{case}.json"
    text = render(case)
    assert json.loads(text) == nft_json(netfw.network_batch(parse_network(CASES[case])))
    assert path.exists(), f"{path} missing; run `make golden` and review it"
    assert path.read_text() == text, f"{path} differs; run `make golden` and review the diff"


DETERMINISM = """
import json, sys
sys.path.insert(0, sys.argv[1])
from unit import test_netfw
print(json.dumps({c: test_netfw.render(c) for c in test_netfw.CASES}))
"""


def test_compilation_is_deterministic_across_processes() -> None:
    """Two interpreters with different hash seeds (set and dict orders) render the same text."""
    here = {c: render(c) for c in CASES}
    tests_dir = str(Path(__file__).resolve().parent.parent)
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", DETERMINISM, tests_dir],
            capture_output=True, text=True, check=True, env=env, timeout=60,
        )  # fmt: skip
        assert json.loads(out.stdout) == here, f"PYTHONHASHSEED={seed}"


def _rules(case: str) -> list[dict]:
    cmds = nft_json(netfw.network_batch(parse_network(CASES[case])))["nftables"]
    return [c["add"]["rule"] for c in cmds if "add" in c and "rule" in c["add"]]


def _chain(case: str, chain: str) -> list[str]:
    """Each rule of ``chain`` as compact JSON text, in order."""
    return [json.dumps(r["expr"], sort_keys=True) for r in _rules(case) if r["chain"] == chain]


def test_open_network_has_no_table() -> None:
    assert not netfw.network_batch(parse_network(CASES["open"]))


def test_every_object_lives_in_the_networks_own_table() -> None:
    for case in CASES:
        for cmd in nft_json(netfw.network_batch(parse_network(CASES[case])))["nftables"]:
            obj = next(iter(next(iter(cmd.values())).values()))
            assert obj["family"] == "inet"
            assert obj.get("table", obj.get("name")) == "nwguard_net_virbr0"


def test_start_batch_replaces_a_leftover_table_in_the_same_transaction() -> None:
    cmds = nft_json(netfw.network_batch(parse_network(CASES["isolated"])))["nftables"]
    assert [next(iter(c)) for c in cmds[:3]] == ["add", "delete", "add"]


def test_forward_evaluates_cross_then_input_then_output() -> None:
    jumps = [json.loads(r)[1]["jump"]["target"] for r in _chain("nat-default", "forward")]
    assert jumps == ["guest_cross", "guest_input", "guest_output"]


def test_rejects_come_after_the_accepts_in_each_guest_chain() -> None:
    for case in ("nat-default", "route", "nat-ipv6-routed"):
        for chain in ("guest_input", "guest_output"):
            kinds = ["reject" in r for r in _chain(case, chain)]
            assert kinds == sorted(kinds), (case, chain)


def test_isolated_forwards_nothing_but_guest_to_guest() -> None:
    assert all("reject" in r for r in _chain("isolated", "guest_output"))
    assert all("reject" in r for r in _chain("isolated", "guest_input"))
    assert _chain("isolated", "guest_nat") == []


def test_nat_masquerade_skips_multicast_and_broadcast_first() -> None:
    nat = _chain("nat-default", "guest_nat")
    assert "224.0.0.0" in nat[0] and "return" in nat[0]
    assert "255.255.255.255" in nat[1] and "return" in nat[1]
    assert '"masquerade": {"port": {"range": [1024, 65535]}}' in nat[2]
    assert nat[4].endswith('{"masquerade": null}]')


def test_route_has_no_nat_and_accepts_new_inbound() -> None:
    assert _chain("route", "guest_nat") == []
    assert not any('"ct":' in r for r in _chain("route", "guest_input"))


def test_ipv6_in_nat_is_routed_unless_nat_ipv6() -> None:
    assert not any("ip6" in r for r in _chain("nat-ipv6-routed", "guest_nat"))
    assert any("ip6" in r for r in _chain("nat-ipv6-masquerade", "guest_nat"))


def test_host_services_only_on_the_bridge() -> None:
    for r in _chain("nat-ipv6-routed", "input"):
        assert '"right": "virbr0"' in r and "iifname" in r
    ports = [json.loads(r)[2]["match"]["right"] for r in _chain("nat-ipv6-routed", "input")]
    assert ports == [67, 67, 53, 53, 53, 53, 547]


def test_forwarding_sysctls_per_mode() -> None:
    assert netfw.forwarding_sysctls(parse_network(CASES["isolated"])) == ()
    assert netfw.forwarding_sysctls(parse_network(CASES["route"])) == (
        "net/ipv4/ip_forward",
        "net/ipv6/conf/all/forwarding",
    )


def test_teardown_is_one_idempotent_table_removal() -> None:
    cmds = nft_json(netfw.teardown_batch("nwguard_net_virbr0"))["nftables"]
    assert cmds == [
        {"add": {"table": {"family": "inet", "name": "nwguard_net_virbr0"}}},
        {"delete": {"table": {"family": "inet", "name": "nwguard_net_virbr0"}}},
    ]
