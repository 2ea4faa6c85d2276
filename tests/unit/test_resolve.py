"""Resolution: flattening, parameter scoping, iterators and ordering with libvirt's semantics.

Spec: ``nwfilter-format.md`` §7 (variables), §8 (filterref), §9 (flattening and ordering),
``builtin-filters.md`` §4 (clean-traffic flattened).
"""

from __future__ import annotations

import pytest

from nwguard.builtin import builtin_filters
from nwguard.errors import ResolveError
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import Filter, FilterRef, Rule, make_params
from nwguard.resolve.resolver import RuleInstance, UnresolvedError, flatten, references, resolve
from nwguard.xmlio.filter_xml import parse_filter

MAC = "52:54:00:12:34:56"


def filters(*docs: str) -> dict[str, Filter]:
    return {f.name: f for f in (parse_filter(d) for d in docs)}


def flt(name: str, body: str, chain: str = "root", priority: int | None = None) -> str:
    prio = f" priority='{priority}'" if priority is not None else ""
    return f"<filter name='{name}' chain='{chain}'{prio}>{body}</filter>"


def tagged(
    tag: str, direction: str = "out", priority: int | None = None, action: str = "accept"
) -> str:
    """A rule recognisable by its comment."""
    prio = f" priority='{priority}'" if priority is not None else ""
    return f"<rule action='{action}' direction='{direction}'{prio}><mac comment='{tag}'/></rule>"


def tags(instances: list[RuleInstance]) -> list[str]:
    out = []
    for i in instances:
        c = i.rule.get("comment")
        out.append(c.value if c else "?")
    return out


def one_rule(proto_xml: str, params: dict[str, tuple[str, ...]]) -> RuleInstance:
    fs = filters(flt("t", f"<rule action='accept' direction='out'>{proto_xml}</rule>"))
    [inst] = resolve(fs, "t", params)
    return inst


# ----------------------------------------------------------------------------- flattening


def test_flattening_is_depth_first_in_document_order() -> None:
    fs = filters(
        flt(
            "top",
            tagged("t1") + "<filterref filter='a'/>" + tagged("t2") + "<filterref filter='b'/>",
        ),
        flt("a", tagged("a1") + "<filterref filter='b'/>" + tagged("a2")),
        flt("b", tagged("b1") + tagged("b2")),
    )
    assert tags(resolve(fs, "top", {})) == ["t1", "a1", "b1", "b2", "a2", "t2", "b1", "b2"]


def test_each_reference_re_emits_the_rules_and_keeps_the_referenced_filters_chain() -> None:
    fs = filters(
        flt("top", "<filterref filter='sub'/><filterref filter='sub'/>"),
        flt("sub", tagged("s"), chain="arp-x", priority=-450),
    )
    out = resolve(fs, "top", {})
    assert [(i.filter, i.chain, i.chain_priority, i.priority) for i in out] == [
        ("sub", "arp-x", -450, 500),
        ("sub", "arp-x", -450, 500),
    ]


def test_diamond_is_not_a_loop() -> None:
    fs = filters(
        flt("top", "<filterref filter='a'/><filterref filter='b'/>"),
        flt("a", "<filterref filter='c'/>"),
        flt("b", "<filterref filter='c'/>"),
        flt("c", tagged("c")),
    )
    assert tags(resolve(fs, "top", {})) == ["c", "c"]
    assert references(fs, "top") == {"top", "a", "b", "c"}


def test_missing_filter_is_an_error_naming_it_and_the_path() -> None:
    fs = filters(flt("top", "<filterref filter='a'/>"), flt("a", "<filterref filter='gone'/>"))
    with pytest.raises(ResolveError, match=r"'gone' is missing \(via top -> a -> gone\)"):
        resolve(fs, "top", {})
    with pytest.raises(ResolveError, match="'nothere' is missing"):
        resolve(fs, "nothere", {})
    assert references(fs, "top") == {"top", "a", "gone"}


@pytest.mark.parametrize(
    "graph",
    [
        {"a": ["a"]},  # self reference
        {"a": ["b"], "b": ["a"]},
        {"a": ["b"], "b": ["c"], "c": ["b"]},
    ],
)
def test_loops_are_refused_at_instantiation(graph: dict[str, list[str]]) -> None:
    # Built directly: the store refuses loops at define time, resolution must not hang anyway.
    fs = {
        name: Filter(name, "u", entries=tuple(FilterRef(r) for r in refs))
        for name, refs in graph.items()
    }
    with pytest.raises(ResolveError, match="loop"):
        resolve(fs, "a", {})


# ----------------------------------------------------------------------------- scoping


def _uses(var: str) -> str:
    return f"<rule action='accept' direction='out'><ip srcipaddr='${var}'/></rule>"


def _ref(name: str, **params: str) -> str:
    ps = "".join(f"<parameter name='{k}' value='{v}'/>" for k, v in params.items())
    return f"<filterref filter='{name}'>{ps}</filterref>"


def test_binding_values_win_over_nested_filterref_parameters() -> None:
    fs = filters(flt("top", _ref("a", X="10.0.0.2")), flt("a", _uses("X")))
    assert resolve(fs, "top", {"X": ("10.0.0.1",)})[0].combos == (("10.0.0.1",),)
    assert resolve(fs, "top", {})[0].combos == (("10.0.0.2",),)


def test_outer_filterref_parameters_win_over_inner_ones() -> None:
    fs = filters(
        flt("top", _ref("a", X="10.0.0.1")),
        flt("a", _ref("b", X="10.0.0.2", Y="10.0.0.3")),
        flt("b", _uses("X") + _uses("Y")),
    )
    assert [i.combos for i in resolve(fs, "top", {})] == [(("10.0.0.1",),), (("10.0.0.3",),)]


def test_siblings_do_not_see_each_others_parameters() -> None:
    fs = filters(
        flt("top", _ref("a", Y="10.0.0.1") + _ref("b")),
        flt("a", _uses("Y")),
        flt("b", _uses("Y")),
    )
    with pytest.raises(UnresolvedError) as exc:
        resolve(fs, "top", {})
    assert exc.value.missing == {"Y"}


def test_a_filterref_parameter_does_not_leak_to_the_referencing_filter() -> None:
    fs = filters(flt("top", _ref("a", Y="10.0.0.1") + _uses("Y")), flt("a", _uses("Y")))
    with pytest.raises(UnresolvedError, match="Y"):
        resolve(fs, "top", {})


def test_list_parameters_from_a_filterref() -> None:
    doc = flt(
        "top",
        "<filterref filter='a'><parameter name='X' value='10.0.0.1'/>"
        "<parameter name='X' value='10.0.0.2'/></filterref>",
    )
    fs = {**filters(doc), **filters(flt("a", _uses("X")))}
    assert resolve(fs, "top", {})[0].combos == (("10.0.0.1",), ("10.0.0.2",))


def test_mac_comes_from_the_binding_unless_given() -> None:
    ref = FilterRef("clean-traffic", make_params([("IP", "10.0.0.5")]))
    b = FilterBinding("vm", "uuid", "vnet0", MAC, ref)
    assert b.params() == {"IP": ("10.0.0.5",), "MAC": (MAC,)}
    explicit = b.with_params(make_params([("IP", "10.0.0.5"), ("MAC", "52:54:00:00:00:99")]))
    assert explicit.params()["MAC"] == ("52:54:00:00:00:99",)
    out = resolve(builtin_filters(), "clean-traffic", b.params())
    macs = {c[0] for i in out if i.filter == "no-mac-spoofing" for c in i.combos if c}
    assert macs == {MAC}


def test_missing_variables_raise_unresolved_error_naming_all_of_them() -> None:
    fs = filters(flt("t", _uses("IP") + _uses("OTHER") + _uses("IP")))
    with pytest.raises(UnresolvedError) as exc:
        resolve(fs, "t", {})
    assert exc.value.missing == {"IP", "OTHER"}
    assert str(exc.value).endswith("unavailable list elements: IP, OTHER")
    assert isinstance(exc.value, ResolveError)


def test_clean_traffic_without_ip_names_only_ip() -> None:
    with pytest.raises(UnresolvedError) as exc:
        resolve(builtin_filters(), "clean-traffic", {"MAC": (MAC,)})
    assert exc.value.missing == {"IP"}  # the one case that starts IP learning in libvirt


# ----------------------------------------------------------------------------- iterators


def test_plain_variable_is_iterator_zero_and_walks_in_parallel() -> None:
    inst = one_rule(
        "<ip srcipaddr='$A' dstipaddr='$B[@0]'/>",
        {"A": ("1.1.1.1", "2.2.2.2"), "B": ("3.3.3.3", "4.4.4.4")},
    )
    assert len(inst.variables) == 2
    assert inst.combos == (("1.1.1.1", "3.3.3.3"), ("2.2.2.2", "4.4.4.4"))


def test_libvirt_iter2_cross_product_in_odometer_order() -> None:
    # nwfilter-format §7.3, libvirt test iter2; XML attribute order must not matter.
    params = {"A": ("1.1.1.1", "2.2.2.2", "3.3.3.3"), "B": ("80", "90", "80")}
    expected = (
        ("1.1.1.1", "80"),
        ("2.2.2.2", "80"),
        ("3.3.3.3", "80"),
        ("1.1.1.1", "90"),
        ("2.2.2.2", "90"),
        ("3.3.3.3", "90"),
    )
    assert one_rule("<udp srcipaddr='$A[@1]' srcportstart='$B[@2]'/>", params).combos == expected
    assert one_rule("<udp srcportstart='$B[@2]' srcipaddr='$A[@1]'/>", params).combos == expected


def test_iterator_zero_varies_fastest_even_when_it_appears_later() -> None:
    inst = one_rule(
        "<udp srcipaddr='$A[@1]' srcportstart='$B'/>",
        {"A": ("1.1.1.1", "2.2.2.2"), "B": ("80", "90")},
    )
    assert inst.combos == (
        ("1.1.1.1", "80"),
        ("1.1.1.1", "90"),
        ("2.2.2.2", "80"),
        ("2.2.2.2", "90"),
    )


def test_three_iterators_first_appearance_order() -> None:
    inst = one_rule(
        "<tcp srcipaddr='$A[@3]' dstipaddr='$B[@1]' dstportstart='$C[@2]'/>",
        {"A": ("1.1.1.1", "1.1.1.2"), "B": ("2.2.2.1", "2.2.2.2"), "C": ("7", "8")},
    )
    assert [c for c in inst.combos][:3] == [
        ("1.1.1.1", "2.2.2.1", "7"),
        ("1.1.1.2", "2.2.2.1", "7"),
        ("1.1.1.1", "2.2.2.2", "7"),
    ]
    assert len(inst.combos) == 8 and len(set(inst.combos)) == 8


def test_parallel_iteration_with_different_lengths_is_an_error() -> None:
    with pytest.raises(ResolveError, match="cardinality.*parallel.*A, B"):
        one_rule(
            "<ip srcipaddr='$A' dstipaddr='$B'/>", {"A": ("1.1.1.1", "2.2.2.2"), "B": ("3.3.3.3",)}
        )
    with pytest.raises(ResolveError, match="cardinality"):
        one_rule(
            "<ip srcipaddr='$A[@4]' dstipaddr='$B[@4]'/>",
            {"A": ("1.1.1.1",), "B": ("3.3.3.3", "4.4.4.4")},
        )


def test_different_iterators_may_have_different_lengths() -> None:
    inst = one_rule(
        "<ip srcipaddr='$A[@1]' dstipaddr='$B[@2]'/>",
        {"A": ("1.1.1.1", "2.2.2.2"), "B": ("3.3.3.3",)},
    )
    assert inst.combos == (("1.1.1.1", "3.3.3.3"), ("2.2.2.2", "3.3.3.3"))


def test_index_picks_one_element_and_is_independent_of_iterators() -> None:
    params = {"A": ("1.1.1.1", "2.2.2.2", "3.3.3.3")}
    assert one_rule("<ip srcipaddr='$A[1]'/>", params).combos == (("2.2.2.2",),)
    inst = one_rule("<ip srcipaddr='$A[0]' dstipaddr='$A'/>", params)
    assert inst.combos == (("1.1.1.1", "1.1.1.1"), ("1.1.1.1", "2.2.2.2"), ("1.1.1.1", "3.3.3.3"))


def test_index_beyond_the_list_is_unresolved() -> None:
    with pytest.raises(UnresolvedError) as exc:
        one_rule("<ip srcipaddr='$A[2]'/>", {"A": ("1.1.1.1", "2.2.2.2")})
    assert exc.value.missing == {"A"}


def test_same_variable_on_two_iterators_is_a_cross_product_with_itself() -> None:
    inst = one_rule("<ip srcipaddr='$A[@1]' dstipaddr='$A[@2]'/>", {"A": ("1.1.1.1", "2.2.2.2")})
    assert inst.combos == (
        ("1.1.1.1", "1.1.1.1"),
        ("2.2.2.2", "1.1.1.1"),
        ("1.1.1.1", "2.2.2.2"),
        ("2.2.2.2", "2.2.2.2"),
    )


def test_repeated_values_are_skipped() -> None:
    assert one_rule("<ip srcipaddr='$A'/>", {"A": ("1.1.1.1", "2.2.2.2", "1.1.1.1")}).combos == (
        ("1.1.1.1",),
        ("2.2.2.2",),
    )
    # Parallel: a position is skipped only when the whole tuple repeats.
    inst = one_rule(
        "<ip srcipaddr='$A' dstipaddr='$B'/>",
        {"A": ("1.1.1.1", "1.1.1.1", "1.1.1.1"), "B": ("3.3.3.3", "4.4.4.4", "3.3.3.3")},
    )
    assert inst.combos == (("1.1.1.1", "3.3.3.3"), ("1.1.1.1", "4.4.4.4"))


def test_a_rule_without_variables_has_one_empty_combination() -> None:
    inst = one_rule("<ip srcipaddr='1.2.3.4'/>", {})
    assert inst.variables == () and inst.combos == ((),)


# ----------------------------------------------------------------------------- ordering


def test_non_root_rules_are_bumped_to_their_chain_priority() -> None:
    fs = filters(
        flt("top", "<filterref filter='v4'/><filterref filter='v6'/>"),
        flt("v4", tagged("low", priority=-800) + tagged("high", priority=-600), chain="ipv4"),
        flt("v6", tagged("v6", priority=-900), chain="ipv6"),
    )
    out = resolve(fs, "top", {})
    assert [(t, i.priority, i.rule.priority) for t, i in zip(tags(out), out, strict=True)] == [
        ("low", -700, -800),  # bumped up to ipv4's -700
        ("high", -600, -600),  # above its chain priority: unchanged
        ("v6", -600, -900),  # bumped to -600, ties with "high" and keeps flattening order
    ]


def test_root_rules_are_never_bumped_and_come_before_all_others() -> None:
    fs = filters(
        flt(
            "top",
            tagged("r1000", priority=1000)
            + "<filterref filter='m'/>"
            + tagged("r-900", priority=-900),
        ),
        flt("m", tagged("m-1000", priority=-1000), chain="mac", priority=-1000),
    )
    out = resolve(fs, "top", {})
    assert tags(out) == ["r-900", "r1000", "m-1000"]
    assert [i.priority for i in out] == [-900, 1000, -1000]


def test_ties_keep_flattening_order() -> None:
    fs = filters(
        flt(
            "top",
            tagged("x") + "<filterref filter='a'/>" + tagged("y") + tagged("first", priority=1),
        ),
        flt("a", tagged("a1") + tagged("a0", priority=0)),
    )
    assert tags(resolve(fs, "top", {})) == ["a0", "first", "x", "a1", "y"]


def test_l4_rules_of_non_root_filters_sort_after_root_ones_whatever_their_priority() -> None:
    fs = filters(
        flt(
            "top",
            "<filterref filter='v4'/>"
            "<rule action='accept' direction='out' priority='900'><tcp comment='root'/></rule>",
        ),
        flt(
            "v4",
            "<rule action='accept' direction='out' priority='-900'><tcp comment='sub'/></rule>",
            chain="ipv4",
        ),
    )
    out = resolve(fs, "top", {})
    assert tags(out) == ["root", "sub"]
    assert out[1].priority == -700  # bumped like any non-root rule


def test_flatten_is_port_independent_and_resolve_is_flatten_plus_values() -> None:
    fs = builtin_filters()
    flat = flatten(fs, "clean-traffic")
    params = {"MAC": (MAC,), "IP": ("10.0.0.5",)}
    out = resolve(fs, "clean-traffic", params)
    assert [(p.rule, p.filter, p.chain, p.priority) for p in flat] == [
        (i.rule, i.filter, i.chain, i.priority) for i in out
    ]


# ----------------------------------------------------------------------------- clean-traffic

# builtin-filters.md §4, in flattening (document) order:
# id, filter, chain, chain priority, rule priority, direction, action, variable values
CLEAN_TRAFFIC = [
    ("A1", "no-mac-spoofing", "mac", -800, 500, "out", "return", "MAC"),
    ("A2", "no-mac-spoofing", "mac", -800, 500, "out", "drop", None),
    ("B1", "no-ip-spoofing", "ipv4-ip", -710, 100, "out", "return", None),
    ("B2", "no-ip-spoofing", "ipv4-ip", -710, 500, "out", "return", "IP"),
    ("B3", "no-ip-spoofing", "ipv4-ip", -710, 1000, "out", "drop", None),
    ("C", "clean-traffic", "root", 0, -650, "out", "accept", None),
    ("D", "allow-incoming-ipv4", "ipv4", -700, 500, "in", "accept", None),
    ("E1", "no-arp-mac-spoofing", "arp-mac", -520, 350, "out", "return", "MAC"),
    ("E2", "no-arp-mac-spoofing", "arp-mac", -520, 1000, "out", "drop", None),
    ("F1", "no-arp-ip-spoofing", "arp-ip", -510, 400, "out", "return", "IP"),
    ("F2", "no-arp-ip-spoofing", "arp-ip", -510, 1000, "out", "drop", None),
    ("G", "clean-traffic", "root", 0, -500, "inout", "accept", None),
    ("H", "no-other-l2-traffic", "root", 0, 1000, "inout", "drop", None),
    ("K", "qemu-announce-self", "root", 0, 500, "out", "accept", None),
    ("L1", "qemu-announce-self-rarp", "rarp", -400, 500, "out", "accept", "MAC"),
    ("L2", "qemu-announce-self-rarp", "rarp", -400, 500, "in", "accept", "MAC"),
    ("M", "no-other-rarp-traffic", "rarp", -400, 1000, "inout", "drop", None),
]


def test_clean_traffic_flattens_to_the_documented_table() -> None:
    ips = ("10.0.0.5", "10.0.0.6")
    out = resolve(builtin_filters(), "clean-traffic", {"MAC": (MAC,), "IP": ips})
    # libvirt's comparator over the documented (flattening-order) table: root first, then
    # priority, stable. No rule is bumped (every chain priority is below its rules').
    expected = sorted(CLEAN_TRAFFIC, key=lambda r: (r[2] != "root", r[4]))
    got = [
        (i.filter, i.chain, i.chain_priority, i.priority, i.rule.direction, i.rule.action)
        for i in out
    ]
    assert got == [row[1:7] for row in expected]
    assert all(i.priority == i.rule.priority for i in out)
    values = {"MAC": {(MAC,)}, "IP": {(ip,) for ip in ips}, None: {()}}
    for row, inst in zip(expected, out, strict=True):
        assert set(inst.combos) == values[row[7]], row[0]
    assert [r[0] for r in expected] == [
        "C",
        "G",
        "K",
        "H",
        "B1",
        "E1",
        "F1",
        "A1",
        "A2",
        "B2",
        "D",
        "L1",
        "L2",
        "B3",
        "E2",
        "F2",
        "M",
    ]


def test_a_plain_rule_without_protocol_is_kept() -> None:
    fs = {"t": Filter("t", "u", entries=(Rule("drop", "inout", 1000),))}
    [inst] = resolve(fs, "t", {})
    assert inst.rule.protocol is None and inst.combos == ((),)
