"""The typed IR changed no rule: today's golden inputs, rendered through the IR and the
nftables backend, give the nftables JSON of the golden files written before the IR existed
(``tests/golden/nft-before-ir/``), up to a one-to-one renaming of chains and sets.

Chains are named by a hash of their content; the hash is now taken over the IR's canonical
form instead of nftables JSON, so every name changed and nothing else may have. A batch lists
chains sorted by name, so its commands are compared as a multiset.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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


def same_up_to_names(old: str, new: str, batch: bool) -> bool:
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


def test_the_comparison_sees_two_chains_merged_into_one() -> None:
    before = (BEFORE / "web-guest.json").read_text()
    now = render("web-guest")
    first, second = list(dict.fromkeys(NAME.findall(now)))[:2]
    assert not same_up_to_names(before, now.replace(second, first), False)
