"""The structural check reads a table's listing through ``monitor.lean``: the same
fingerprint as the whole parse, from a few objects (10,000 ports' listing is megabytes).

The listings are ``nft -j list table`` of two ports bound to clean-traffic plus a TCP rule
(nft 1.0.6), with one ``drops`` element with a counter added by hand."""

from __future__ import annotations

import json
from pathlib import Path

from nwguard.daemon import monitor as M

DATA = Path(__file__).resolve().parent / "data"
DROP = {"elem": {"val": {"concat": ["pa", "", "7a:47:e0:87:27:5a", 8]},
                 "counter": {"packets": 3, "bytes": 216}}}  # fmt: skip


def listings() -> dict[str, str]:
    bridge = json.loads((DATA / "nft-list-table-bridge.json").read_text())
    for item in bridge["nftables"]:
        if item.get("set", {}).get("name") == "drops":
            item["set"]["elem"] = [DROP]
    return {
        "list table bridge nwguard": json.dumps(bridge),
        "list table inet nwguard": (DATA / "nft-list-table-inet.json").read_text(),
    }


def fingerprints(texts: dict[str, str]) -> tuple[M.Fingerprint, M.Fingerprint]:
    tables = {("bridge", "nwguard"), ("inet", "nwguard")}
    whole = M.actual(tables, lambda cmd: json.loads(texts[cmd]))
    lean = M.actual(tables, lambda cmd: json.loads(texts[cmd], object_hook=M.lean))
    return whole, lean


def test_the_lean_parse_gives_the_whole_parses_fingerprint() -> None:
    whole, lean = fingerprints(listings())
    assert lean == whole
    assert whole.chains[("bridge", "nwguard", "pre_l4")] == 1  # rules counted
    assert whole.sets[("bridge", "nwguard", "l2o")] == 2  # and elements
    assert whole.sets[("bridge", "nwguard", "drops")] == 1
    assert ("inet", "nwguard", "ct_marks") in whole.sets


def test_the_lean_parse_keeps_no_expression_and_still_sees_a_missing_element() -> None:
    text = listings()["list table bridge nwguard"]
    kept = json.dumps(json.loads(text, object_hook=M.lean))
    assert '"expr"' not in kept and "ether" not in kept and "52:54:00" not in kept
    assert len(kept) < len(text) / 3
    data = json.loads(text)
    for item in data["nftables"]:  # someone deleted one dispatch entry
        if item.get("map", {}).get("name") == "l2o":
            item["map"]["elem"] = item["map"]["elem"][:1]
    texts = {**listings(), "list table bridge nwguard": json.dumps(data)}
    whole, lean = fingerprints(texts)
    assert lean == whole and lean.sets[("bridge", "nwguard", "l2o")] == 1
