"""The per-interface counting rules are the first rule of each dispatch base chain (no base
chain of their own: one hook traversal less per frame and side)."""

from __future__ import annotations

from typing import Any

from nwguard.backends.nft import layout
from nwguard.backends.nft.render import nft_json
from nwguard.compile.kernel_state import KernelState, full


def _base_chains_and_rules(batch: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    chains: dict[str, list[list[Any]]] = {}
    for cmd in batch:
        body = cmd.get("add", {})
        if "chain" in body and body["chain"]["family"] == "bridge" and "hook" in body["chain"]:
            chains[body["chain"]["name"]] = []
        if "rule" in body and body["rule"]["chain"] in chains:
            chains[body["rule"]["chain"]].append(body["rule"]["expr"])
    return chains


def test_counting_is_the_first_rule_of_each_dispatch_chain() -> None:
    chains = _base_chains_and_rules(nft_json(full(KernelState()))["nftables"])
    assert set(chains) == {"pre_l2", "pre_l4", "post_l2", "fwd_l4", "out_l4"}
    for chain, set_name, key in layout.counting_chains():
        first, *rest = chains[chain]
        assert first == [{"set": {"op": "update", "elem": {"meta": {"key": key}},
                                  "set": "@" + set_name}}]  # fmt: skip
        assert rest and not any("@" + set_name in str(r) for r in rest)
    sides = {(c, s) for c, s, _ in layout.counting_chains()}
    assert sides == {("pre_l2", "seen_out"), ("fwd_l4", "seen_in"), ("out_l4", "seen_in")}
