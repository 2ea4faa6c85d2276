"""What the differential harness against libvirt found in nwguard, pinned without a kernel
(the kernel side: the explicit examples of tests/kernel/test_differential.py)."""

from __future__ import annotations

import pytest

from nwguard.backends.nft.render import rule_expr
from nwguard.compile.program import compile_port
from nwguard.resolve.resolver import resolve
from nwguard.xmlio.filter_xml import parse_filter


def _ranges(body: str) -> list[list[object]]:
    """The address ranges of each copy of the rule (l4o's first, then l4i's)."""
    f = parse_filter(f"<filter name='x'><rule action='drop' direction='out'>{body}</rule></filter>")
    c = compile_port("vnet0", resolve({"x": f}, "x", {}))
    out = []
    for role in ("l4o", "l4i"):
        for rule in c.chains[c.dispatch[role]]:
            expr = rule_expr(rule)
            if {"drop": None} in expr:
                out.append([m["match"]["right"]["range"] for m in expr if "range" in str(m)])
    return out


@pytest.mark.parametrize(
    ("body", "lo", "hi", "first", "last"),
    [
        ("<udp dstipfrom='192.0.2.99' dstipto='192.0.2.20'/>",
         "192.0.2.99", "192.0.2.20", "0.0.0.0", "255.255.255.255"),
        ("<tcp-ipv6 srcipfrom='2001:db8::99' srcipto='2001:db8::11'/>",
         "2001:db8::99", "2001:db8::11", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ],
)  # fmt: skip
def test_a_reversed_address_range_matches_nothing_like_iprange(body, lo, hi, first, last):
    """libvirt binds it (iptables' iprange: from <= addr <= to, never true); nft refused the
    reversed range and with it the whole bind. Now: two ranges whose intersection is empty."""
    assert _ranges(body) == [[[lo, last], [first, hi]]] * 2  # primary and mirrored copy


def test_a_negated_reversed_range_matches_every_address():
    assert _ranges("<udp match='no' dstipfrom='192.0.2.99' dstipto='192.0.2.20'/>") == [[], []]


def test_a_range_in_order_is_one_range():
    assert (
        _ranges("<udp dstipfrom='192.0.2.20' dstipto='192.0.2.99'/>")
        == [[["192.0.2.20", "192.0.2.99"]]] * 2
    )
