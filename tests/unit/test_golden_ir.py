"""The typed IR changed no rule: today's golden inputs, rendered through the IR and the
nftables backend, give the nftables JSON of the golden files written before the IR existed
(``tests/golden/nft-before-ir/``), up to a one-to-one renaming of chains and sets.

Chains are named by a hash of their content; the hash is now taken over the IR's canonical
form instead of nftables JSON, so every name changed and nothing else may have. A batch lists
chains sorted by name, so its commands are compared as a multiset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from nwguard.backends.nft.render import ip_layer, rule_id

from .test_golden import CASES, render

BEFORE = Path(__file__).resolve().parent.parent / "golden" / "nft-before-ir"
NAME = re.compile(r"(?<![0-9a-z])c[0-9a-f]{12}(?![0-9a-f])")
DISPATCH = re.compile(
    r'"name": "(l[24][io])", "elem": \[\["[^"]+", \{"goto": \{"target": "(c[0-9a-f]{12})"'
)


def renaming(old: str, new: str, batch: bool) -> dict[str, str] | None:
    """old name -> new name, paired by position (a batch: through its dispatch entries);
    None if the pairing is not one to one."""
    if batch:
        ro, rn = dict(DISPATCH.findall(old)), dict(DISPATCH.findall(new))
        if ro.keys() != rn.keys():
            return None
        pairs = [(ro[r], rn[r]) for r in sorted(ro)]
    else:
        a, b = NAME.findall(old), NAME.findall(new)
        if len(a) != len(b):
            return None
        pairs = list(zip(a, b, strict=True))
    fwd: dict[str, str] = {}
    back: dict[str, str] = {}
    for x, y in pairs:
        if fwd.setdefault(x, y) != y or back.setdefault(y, x) != x:
            return None
    return fwd


CHAIN_LINE = re.compile(r'^    "(c[0-9a-f]{12})": \[')
REJECT = [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 0x20000000]}}}, {"accept": None}]  # fmt: skip


def _rule(line: str, batch: bool) -> tuple[str | None, list[Any]] | None:
    """(chain, expr) of a rule line (chain None in a contribution), None for other lines."""
    text = line.strip().rstrip(",")
    if batch:
        cmd = json.loads(text) if text.startswith('{"add": {"rule"') else {}
        r = cmd.get("add", {}).get("rule")
        return (r["chain"], r["expr"]) if r else None
    return (None, json.loads(text)) if text.startswith("[{") else None


def _is_update(x: Any) -> bool:
    return isinstance(x, dict) and x.get("set", {}).get("set") == "@drops"


def without_counting(new: str, batch: bool) -> str | None:
    """``new`` without its counting rules; None if one is not exactly the counting rule of
    the drop or reject rule after it, or a drop or reject rule lacks one."""
    lines = new.splitlines()
    keep: list[str] = []
    chain: str | None = None
    index: dict[str, int] = {}  # rules (not counting) seen so far per chain
    for i, line in enumerate(lines):
        if m := CHAIN_LINE.match(line):
            chain = m.group(1)
        rule = _rule(line, batch)
        if rule is None:
            keep.append(line)
            continue
        where = rule[0] or chain
        assert where is not None
        expr = rule[1]
        if expr and _is_update(expr[-1]):
            after = _rule(lines[i + 1], batch) if i + 1 < len(lines) else None
            if after is None or (after[0] or chain) != where:
                return None
            matches, verdict = after[1][: len(expr) - 2], after[1][len(expr) - 2 :]
            key = expr[-1]["set"]["elem"]["concat"]
            want = [{"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}]
            want += list(rule_id(where, index.get(where, 0)))
            log = {"log": {"prefix": f"nwguard {where} {index.get(where, 0)}", "group": 20055}}
            if matches != expr[:-2] or verdict not in ([{"drop": None}], REJECT) or key != want:
                return None
            if expr[-2] != log:
                return None
            continue
        if expr[-1] == {"drop": None} or expr[-2:] == REJECT:
            prev = _rule(lines[i - 1], batch) if i else None
            if prev is None or not _is_update(prev[1][-1]):
                return None  # a drop or reject rule without its counting rule
        index[where] = index.get(where, 0) + 1
        keep.append(line)
    return "\n".join(keep) + "\n"


IP_LAYER = [json.dumps(c) for c in ip_layer("add")]


def without_ip_layer(new: str) -> str | None:
    """A batch without the IP-layer commands it begins with (the fixed layout's, added with
    the first port that needs them since issue 13); None if they are not there."""
    lines = new.splitlines()
    if [ln.strip().rstrip(",") for ln in lines[1 : 1 + len(IP_LAYER)]] != IP_LAYER:
        return None
    return "\n".join(lines[:1] + lines[1 + len(IP_LAYER) :]) + "\n"


def same_up_to_names(old: str, new: str, batch: bool) -> bool:
    if batch:
        rest = without_ip_layer(new)
        if rest is None:
            return False
        new = rest
    stripped = without_counting(new, batch)
    if stripped is None:
        return False
    new = stripped
    names = renaming(old, new, batch)
    if names is None:
        return False
    renamed = NAME.sub(lambda m: names.get(m.group(0), "?" + m.group(0)), old)
    if batch:
        return sorted(x.rstrip(",") for x in renamed.splitlines()) == sorted(
            x.rstrip(",") for x in new.splitlines()
        )
    return renamed == new


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_ir_renders_the_rules_of_before(name: str) -> None:
    before = (BEFORE / f"{name}.json").read_text()
    assert same_up_to_names(before, render(name), CASES[name].batch)


def test_the_comparison_sees_a_changed_rule() -> None:
    before = (BEFORE / "clean-traffic.json").read_text()
    now = render("clean-traffic")
    assert not same_up_to_names(before, now.replace('"right": 2054', '"right": 2055', 1), False)
    assert not same_up_to_names(before, now.replace('"accept"', '"drop"', 1), False)
    batch = render("no-spamming-batch")
    old_batch = (BEFORE / "no-spamming-batch.json").read_text()
    assert not same_up_to_names(old_batch, batch.replace("[25, 25]", "[25, 26]", 1), True)
    assert same_up_to_names(old_batch, batch, True)
    no_ip_layer = without_ip_layer(batch)
    assert no_ip_layer is not None and not same_up_to_names(old_batch, no_ip_layer, True)


def test_the_comparison_sees_two_chains_merged_into_one() -> None:
    before = (BEFORE / "web-guest.json").read_text()
    now = render("web-guest")
    first, second = list(dict.fromkeys(NAME.findall(now)))[:2]
    assert not same_up_to_names(before, now.replace(second, first), False)


def _mutate_first_counting_line(text: str, change: Any) -> str:
    lines = text.splitlines()
    first = next(i for i, ln in enumerate(lines) if '"@drops"' in ln)
    new = change(lines[first])
    assert new != lines[first]
    return (
        "\n".join([*lines[:first], *([new] if new is not None else []), *lines[first + 1 :]]) + "\n"
    )


def test_counting_rules_are_checked_one_by_one() -> None:
    now = render("clean-traffic")
    assert now.count('"@drops"') == 8 and without_counting(now, False) is not None
    spam = render("no-spamming")
    assert without_counting(spam, False) is not None
    other_matches = _mutate_first_counting_line(spam, lambda ln: ln.replace("[25, 25]", "[25, 26]"))
    other_index = _mutate_first_counting_line(
        now,
        lambda ln: re.sub(r", (\d+)\]\}, \"set\"", lambda m: f', {int(m[1]) + 1}]}}, "set"', ln),
    )
    missing = _mutate_first_counting_line(now, lambda ln: None)
    other_log = _mutate_first_counting_line(
        now, lambda ln: ln.replace('"group": 20055', '"group": 1')
    )
    assert without_counting(other_log, False) is None
    assert without_counting(other_matches, False) is None
    assert without_counting(other_index, False) is None
    assert without_counting(missing, False) is None
    batch = without_ip_layer(render("no-spamming-batch"))
    assert batch is not None
    assert batch.count('"@drops"') == 2 and without_counting(batch, True) is not None
