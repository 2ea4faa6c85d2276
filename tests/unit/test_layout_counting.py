"""No rule counts a frame that passes: nwguard's base chains hold their dispatch alone (what
each port sent and received is its interface's statistics), and a bridge of Ethernet-layer
ports crosses only the two Ethernet-layer base chains."""

from __future__ import annotations

from typing import Any

from nwguard.backends.nft.render import nft_json
from nwguard.compile.kernel_state import KernelState, full

from .test_golden import CASES, contribution


def _base_chains_and_rules(batch: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    chains: dict[str, list[list[Any]]] = {}
    for cmd in batch:
        body = cmd.get("add", {})
        if "chain" in body and body["chain"]["family"] == "bridge" and "hook" in body["chain"]:
            chains[body["chain"]["name"]] = []
        if "rule" in body and body["rule"]["chain"] in chains:
            chains[body["rule"]["chain"]].append(body["rule"]["expr"])
    return chains


def _vmap(key: str, role: str) -> list[Any]:
    return [{"vmap": {"key": {"meta": {"key": key}}, "data": "@" + role}}]


def test_an_ethernet_layer_state_has_two_base_chains_of_one_dispatch_rule_each() -> None:
    st = KernelState().with_port("vnet0", contribution(CASES["clean-traffic"]))
    chains = _base_chains_and_rules(nft_json(full(st))["nftables"])
    assert chains == {"pre_l2": [_vmap("iifname", "l2o")], "post_l2": [_vmap("oifname", "l2i")]}


def test_the_ip_layer_base_chains_hold_their_dispatch_and_the_hosts_reject_drop() -> None:
    st = KernelState().with_port("vnet0", contribution(CASES["web-guest"]))
    chains = _base_chains_and_rules(nft_json(full(st))["nftables"])
    assert set(chains) == {"pre_l2", "post_l2", "pre_l4", "fwd_l4", "out_l4"}
    assert chains["pre_l4"] == [_vmap("iifname", "l4o")]
    assert chains["fwd_l4"] == [_vmap("oifname", "l4i")]
    first, drop = chains["out_l4"]
    assert first == _vmap("oifname", "l4i") and drop[-1] == {"drop": None}
    assert "update" not in str(chains)
