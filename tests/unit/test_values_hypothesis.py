"""Property tests: every value type is a fixed point of format/parse; generated filters round-trip."""

from __future__ import annotations

import ipaddress
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nwguard.model import protocols as P
from nwguard.model import values as V
from nwguard.model.filter import AttrValue, Filter, FilterRef, Rule, make_params
from nwguard.xmlio.filter_xml import parse_filter, write_filter

INT_RANGES = {
    "UINT8": (0, 0xFF),
    "UINT16": (0, 0xFFFF),
    "UINT32": (0, 0xFFFFFFFF),
    "DSCP": (0, 63),
    "VLAN_ID": (0, 4095),
    "ETHERTYPE": (0x600, 0xFFFF),
    "ENCAP_PROTOCOL": (0x3C, 0xFFFF),
    "IP_PROTOCOL": (0, 0xFF),
    "ARP_OPCODE": (0, 0xFFFF),
}
TYPES = {a.type.name: a.type for p in P.PROTOCOLS.values() for a in p.attrs}
XML_CHARS = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff", min_codepoint=0x20
) | st.sampled_from("\t\n\r")


def int_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    """Decimal, 0x-hex, or bare hex when it has a letter (all-digit text is decimal first)."""

    def forms(n: int) -> list[str]:
        bare = f"{n:X}"
        return [str(n), hex(n), hex(n).upper().replace("X", "x")] + (
            [bare] if not bare.isdigit() else []
        )

    return st.integers(lo, hi).flatmap(lambda n: st.sampled_from(forms(n)))


def _mask_text(width: int, version: int) -> st.SearchStrategy[str]:
    def as_text(n: int, dotted: bool) -> str:
        if not dotted:
            return str(n)
        bits = ((1 << width) - 1) ^ ((1 << (width - n)) - 1)
        return str(ipaddress.ip_address(bits) if version == 4 else ipaddress.IPv6Address(bits))

    return st.builds(as_text, st.integers(0, width), st.booleans())


def _mac(b: bytes) -> str:
    return ":".join(f"{x:x}" for x in b)


def _mac_mask(n: int) -> str:
    bits = ((1 << 48) - 1) ^ ((1 << (48 - n)) - 1)
    return _mac(bits.to_bytes(6, "big"))


def _flags(n: int) -> str:
    return ",".join(k for k, b in V.TCP_FLAG_BITS.items() if n & b) or "NONE"


TEXT: dict[str, st.SearchStrategy[str]] = {
    **{name: int_text(lo, hi) for name, (lo, hi) in INT_RANGES.items()},
    "MAC_ADDR": st.binary(min_size=6, max_size=6).map(_mac),
    "MAC_MASK": st.integers(0, 48).map(_mac_mask),
    "IP_ADDR": st.ip_addresses(v=4).map(str),
    "IPV6_ADDR": st.ip_addresses(v=6).map(str),
    "IP_MASK": _mask_text(32, 4),
    "IPV6_MASK": _mask_text(128, 6),
    "STATE": st.lists(st.sampled_from([*V.STATE_NAMES, "none", "New"]), min_size=1).map(",".join),
    "TCP_FLAGS": st.builds(
        lambda m, s: f"{_flags(m)}/{_flags(s)}", st.integers(0, 63), st.integers(0, 63)
    ),
    "IPSETNAME": st.text(string.ascii_letters + string.digits + "_.:+ -", min_size=1, max_size=31),
    "IPSETFLAGS": st.lists(st.sampled_from(["src", "dst", "SRC"]), min_size=1, max_size=6).map(
        ",".join
    ),
    "STRING": st.text(XML_CHARS, max_size=256).filter(lambda t: not t.startswith("$")),
    "BOOLEAN": st.sampled_from(["true", "yes", "1", "false", "no", "0", "TRUE"]),
}
VAR = st.builds(
    V.VarRef,
    st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8),
    st.none(),
    st.integers(0, V.MAX_ITERATOR_ID),
) | st.builds(V.VarRef, st.text("ABCXYZ_", min_size=1, max_size=4), st.integers(0, 99), st.none())


def test_every_type_has_a_strategy():
    assert set(TYPES) == set(TEXT)


@given(st.data())
def test_value_types_format_parse_is_identity(data):
    name = data.draw(st.sampled_from(sorted(TYPES)))
    vtype = TYPES[name]
    value = vtype.parse(data.draw(TEXT[name]))
    text = vtype.format(value)
    assert vtype.parse(text) == value
    assert vtype.format(vtype.parse(text)) == text


@given(VAR)
def test_variable_references_round_trip(ref):
    assert V.VarRef.parse(str(ref)) == ref
    assert V.parse_value(V.UINT16, str(ref)) == ref


@given(st.sampled_from(sorted(TYPES)), st.text(max_size=40))
def test_parsing_any_text_gives_a_value_or_bad_value(name, text):
    try:
        V.parse_value(TYPES[name], text)
    except V.BadValue as exc:
        assert exc.allowed


# ----------------------------------------------------------------------------- whole filters

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
CHAINS = st.sampled_from(["root"]) | st.builds(
    lambda p, s: (p + s)[:12],
    st.sampled_from(P.CHAIN_PREFIXES),
    st.from_regex(r"[A-Za-z0-9_.:-]{0,8}", fullmatch=True),
)
PRIORITY = st.integers(P.MIN_PRIORITY, P.MAX_PRIORITY)


@st.composite
def rules(draw) -> Rule:
    action = draw(st.sampled_from(P.ACTIONS))
    direction = draw(st.sampled_from(P.DIRECTIONS))
    priority, statematch = draw(PRIORITY), draw(st.booleans())
    proto_name = draw(st.none() | st.sampled_from(sorted(P.PROTOCOLS)))
    if proto_name is None:
        return Rule(action, direction, priority, statematch)
    proto = P.PROTOCOLS[proto_name]
    chosen = draw(st.lists(st.sampled_from(proto.attr_names), unique=True, max_size=8))
    negated: dict[str, bool] = {}
    attrs = []
    for attr in proto.attrs:  # table order, as the parser keeps them
        if attr.name not in chosen:
            continue
        value = (
            draw(VAR)
            if draw(st.integers(0, 4)) == 0
            else attr.type.parse(draw(TEXT[attr.type.name]))
        )
        neg = negated.get(attr.base, draw(st.booleans())) if attr.base else draw(st.booleans())
        negated[attr.name] = neg
        attrs.append(AttrValue(attr.name, value, neg))
    if proto_name in ("ip", "ipv6") and any(a.name in P.PORT_ATTRS for a in attrs):
        attrs = [a for a in attrs if a.name != "protocol"]
        attrs.append(
            AttrValue(
                "protocol", V.Num(draw(st.sampled_from(P.PORT_PROTOCOLS))), draw(st.booleans())
            )
        )
        order = proto.attr_names
        attrs.sort(key=lambda a: order.index(a.name))
    return Rule(action, direction, priority, statematch, proto_name, tuple(attrs))


PARAM_VALUES = st.from_regex(r"[A-Za-z0-9_.:]{1,12}", fullmatch=True)
REFS = st.builds(
    lambda name, params: FilterRef(name, make_params(params)),
    NAMES,
    st.lists(
        st.tuples(st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True), PARAM_VALUES), max_size=4
    ),
)


@st.composite
def filters(draw) -> Filter:
    return Filter(
        draw(NAMES),
        str(draw(st.uuids())),
        draw(CHAINS),
        draw(PRIORITY),
        tuple(draw(st.lists(rules() | REFS, max_size=6))),
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(filters())
def test_generated_filters_round_trip_through_xml(f):
    text = write_filter(f)
    again = parse_filter(text)
    assert again == f, text
    assert write_filter(again) == text
