"""The typed IR: canonical codec, provenance, derived tables, and how nftables spells it."""

from __future__ import annotations

import pytest

from nwguard.backends.nft import marks
from nwguard.backends.nft.render import nft_json, render_ports, rule_expr, stmt
from nwguard.builtin import builtin_filters
from nwguard.compile import matches
from nwguard.compile.kernel_state import KernelState, full
from nwguard.compile.program import compile_port
from nwguard.ir import codec
from nwguard.ir.nodes import Concat, CtState, Masked, Match, Meta, Payload, RawPayload, Verdict
from nwguard.ir.ports import FilterRule, Lookup, Origin, SlotSet
from nwguard.model.protocols import PROTOCOLS
from nwguard.resolve.resolver import resolve
from nwguard.xmlio.filter_xml import parse_filter

MAC = "52:54:00:12:34:56"


def clean_traffic(port: str = "vnet0"):
    return compile_port(
        port, resolve(builtin_filters(), "clean-traffic", {"MAC": (MAC,), "IP": ("10.0.0.5",)})
    )


# ----------------------------------------------------------------------------- codec


def test_every_compiled_rule_and_set_key_round_trips_through_the_codec() -> None:
    c = clean_traffic()
    for rules in c.chains.values():
        for r in rules:
            back = codec.decode(codec.encode(r))
            assert back == r and back.origin == r.origin
    for key in c.sets.values():
        assert codec.decode(codec.encode(key)) == key


def test_the_codec_leaves_defaults_out_and_refuses_what_it_does_not_know() -> None:
    assert codec.encode(Match(Meta("l4proto"), 6)) == {
        "@": "Match",
        "left": {"@": "Meta", "key": "l4proto"},
        "right": 6,
    }
    assert codec.encode(Match(Meta("l4proto"), 6, "!="))["op"] == "!="
    with pytest.raises(ValueError, match="unknown IR record 'Nope'"):
        codec.decode({"@": "Nope"})
    with pytest.raises(TypeError, match="cannot encode float"):
        codec.encode(Match(Meta("mark"), 1.5))  # type: ignore[arg-type]


def test_the_origin_takes_no_part_in_equality() -> None:
    a = FilterRule((Match(Meta("l4proto"), 6),), Verdict("drop"), Origin("f", ("f",), 1))
    b = FilterRule((Match(Meta("l4proto"), 6),), Verdict("drop"), Origin("g", ("top", "g"), 3))
    assert a == b and hash(a) == hash(b)
    assert a != FilterRule((Match(Meta("l4proto"), 17),), Verdict("drop"))


# ----------------------------------------------------------------------------- provenance


def test_every_rule_names_its_filter_path_and_index() -> None:
    c = clean_traffic()
    origins = {r.origin for rules in c.chains.values() for r in rules if r.origin is not None}
    by_filter = {o.filter for o in origins}
    assert {
        "clean-traffic",
        "no-mac-spoofing",
        "no-ip-spoofing",
        "no-arp-mac-spoofing",
    } <= by_filter
    spoof = [o for o in origins if o.filter == "no-mac-spoofing"]
    assert {o.path for o in spoof} == {("clean-traffic", "no-mac-spoofing")}
    assert {o.index for o in spoof} == {1, 2}  # its two rules
    # only jumps into sub-chains have no origin: they come from chains, not from a rule
    no_origin = [r for rules in c.chains.values() for r in rules if r.origin is None]
    assert no_origin and all(r.verdict.kind == "jump" for r in no_origin)


def test_a_mirrored_copy_says_so() -> None:
    f = parse_filter(
        "<filter name='t' chain='root'><rule action='accept' direction='inout'>"
        "<tcp dstportstart='22'/></rule></filter>"
    )
    c = compile_port("p1", resolve({"t": f}, "t", {}))
    copies = sorted(r.origin.copy for rules in c.chains.values() for r in rules if r.origin)
    assert copies == ["", "mirrored"]


# ----------------------------------------------------------------------------- derived tables


def test_mirror_swaps_every_src_attribute_with_its_dst_twin_both_ways() -> None:
    assert matches.MIRROR["srcipaddr"] == "dstipaddr" and matches.MIRROR["dstipaddr"] == "srcipaddr"
    assert matches.MIRROR["arpsrcipmask"] == "arpdstipmask"
    assert all(matches.MIRROR[b] == a for a, b in matches.MIRROR.items())
    assert "srcipfrom" in matches.MIRROR and "protocol" not in matches.MIRROR


def test_every_mask_or_range_end_completes_exactly_one_attribute() -> None:
    ends = {a.name for p in PROTOCOLS.values() for a in p.attrs if a.base is not None} - {"code"}
    assert set(matches._COMPANIONS.values()) == ends
    assert matches._COMPANIONS["srcportstart"] == "srcportend"
    assert matches._COMPANIONS["root-address"] == "root-address-mask"
    assert matches._COMPANIONS["type"] == "typeend" and matches._COMPANIONS["code"] == "codeend"


def test_l4_protocol_numbers_come_from_the_ip_protocol_names() -> None:
    assert matches._L4_PROTO["sctp-ipv6"] == 132 and matches._L4_PROTO["icmpv6"] == 58
    assert "all" not in matches._L4_PROTO and "all-ipv6" not in matches._L4_PROTO
    l4 = {n for n, p in PROTOCOLS.items() if p.layer.value != "ethernet"}
    assert set(matches._L4_PROTO) == l4 - {"all", "all-ipv6"}


# ----------------------------------------------------------------------------- nftables spelling


def test_connection_state_is_read_from_the_mark_bits() -> None:
    mark = {"meta": {"key": "mark"}}
    (any_dir,) = stmt(CtState(("RELATED",)))
    assert any_dir == {"match": {"op": "!=", "left": {"&": [mark, marks.RELATED]}, "right": 0}}
    (original,) = stmt(CtState(("NEW", "ESTABLISHED"), "original"))
    bits = marks.NEW | marks.ESTABLISHED | marks.REPLY
    assert original["match"]["left"] == {"&": [mark, bits]}
    assert original["match"]["right"] == {"set": [marks.NEW, marks.ESTABLISHED]}
    (reply,) = stmt(CtState(("ESTABLISHED",), "reply"))
    assert reply["match"]["right"] == marks.ESTABLISHED | marks.REPLY


def test_a_port_reject_marks_the_packet_for_the_inet_table_and_lets_it_on() -> None:
    mangle, accept = stmt(Verdict("reject"))
    assert mangle["mangle"]["value"] == {"|": [{"meta": {"key": "mark"}}, marks.REJECT]}
    assert accept == {"accept": None}


def test_masked_values_and_lookups() -> None:
    (m,) = stmt(Match(Payload("ether", "saddr"), Masked("52:54:00:00:00:00", "ff:ff:ff:00:00:00")))
    assert m["match"]["left"] == {
        "&": [{"payload": {"protocol": "ether", "field": "saddr"}}, "ff:ff:ff:00:00:00"]
    }
    assert m["match"]["right"] == "52:54:00:00:00:00"
    rule = FilterRule((Lookup("in", (Payload("ip", "daddr"),), "c1_0", True),), Verdict("drop"))
    ((look, drop)) = rule_expr(rule)
    assert look["match"]["op"] == "!=" and look["match"]["right"] == "@c1_0"
    assert look["match"]["left"]["concat"][0] == {"meta": {"key": "oifname"}}
    assert drop == {"drop": None}
    assert Concat((Meta("iifname"),)) == Concat((Meta("iifname"),))


def test_raw_keyed_sets_are_declared_with_typeof_apart_from_the_json() -> None:
    state = KernelState().with_port("vnet0", clean_traffic())
    nft = render_ports(full(state))
    typeofs = sorted(t.typeof for t in nft.typeof_sets)
    assert typeofs == [
        "iifname . @nh,64,48 . @nh,144,48",
        "iifname . ether saddr . @nh,64,48 . @nh,144,48",
    ]
    sets_in_json = {c["add"]["set"]["name"] for c in nft.commands if "set" in c.get("add", {})}
    assert not sets_in_json & {t.name for t in nft.typeof_sets}
    listed = nft.listed()["nftables"]
    assert len(listed) == len(nft.commands) + len(nft.typeof_sets)
    raw = [s for s in state.sets.values() if any(isinstance(k, RawPayload) for k in s)]
    assert len(raw) == 2
    assert nft_json(full(KernelState()))["nftables"][0] == {
        "add": {"table": {"family": "bridge", "name": "nwguard"}}
    }
    assert SlotSet("x", ("ifname",)) == SlotSet("x", ("ifname",))
