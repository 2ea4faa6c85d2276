"""A rule knows its XML line (for explain), and the line is no part of the filter's identity."""

from __future__ import annotations

from nwguard.builtin import builtin_filters
from nwguard.compile.program import PortCompiler
from nwguard.xmlio.filter_xml import parse_filter

XML = """<filter name='f'>
  <rule action='drop' direction='out'>
    <tcp dstportstart='25'/>
  </rule>
  <rule action='accept' direction='in'><udp/></rule>
</filter>"""


def test_each_rule_has_the_line_of_its_element() -> None:
    f = parse_filter(XML)
    assert [r.line for r in f.rules] == [2, 5]


def test_a_reformatted_filter_is_the_same_filter() -> None:
    flat = XML.replace("\n", "")
    a, b = parse_filter(XML), parse_filter(flat)
    assert [r.line for r in b.rules] == [1, 1]
    assert a.replace(uuid="u") == b.replace(uuid="u")
    assert hash(a.rules[0]) == hash(b.rules[0])


def test_compiled_rules_carry_the_line_in_their_origin() -> None:
    c = PortCompiler(builtin_filters()).compile(
        "vnet0", "no-mac-spoofing", {"MAC": ("52:54:00:aa:bb:cc",)}
    )
    origins = [r.origin for rules in c.chains.values() for r in rules if r.origin]
    assert {(o.filter, o.index, o.line) for o in origins} == {
        ("no-mac-spoofing", 1, 4),
        ("no-mac-spoofing", 2, 7),
    }
