"""compile_port: libvirt's rule layout expressed as nftables chains, sets and copies.

Spec: ``ebiptables-layout.md`` §3 (Ethernet layer), §4.3 (iptables-layer copies),
``builtin-filters.md`` §4 (clean-traffic), ``nwfilter-format.md`` §4, §6, §7.

Rules are checked through :func:`show`, a compact nft-like text of one rendered rule
(``ether.type==0x800 accept``), and :func:`tree`, which inlines jumped-to chains
(``ether.type==0x806 jump[ ... | drop ]``), so the assertions read like the spec's tables.
Set references print as ``@set``; their elements are checked separately.
"""

from __future__ import annotations

from typing import Any

import pytest

from nwguard.backends.nft import marks
from nwguard.backends.nft.render import rule_expr, set_key_type, typeof
from nwguard.backends.nft.render import stmt as render_stmt
from nwguard.builtin import builtin_filters
from nwguard.compile.program import (
    ORIGINAL_NEW_OR_ESTABLISHED,
    REPLY_ESTABLISHED,
    Contribution,
    PortCompiler,
    compile_port,
)
from nwguard.errors import CompileError, ResolveError
from nwguard.ir.nodes import CtState, RawPayload
from nwguard.model.filter import Filter
from nwguard.resolve.resolver import resolve
from nwguard.xmlio.filter_xml import parse_filter

MAC = "52:54:00:12:34:56"


def filters(*docs: str) -> dict[str, Filter]:
    return {f.name: f for f in (parse_filter(d) for d in docs)}


def compile_xml(
    body: str,
    params: dict[str, tuple[str, ...]] | None = None,
    port: str = "p1",
    chain: str = "root",
) -> Contribution:
    """Compile one filter (``body``: its rules) for ``port``."""
    fs = filters(f"<filter name='t' chain='{chain}'>{body}</filter>")
    return compile_port(port, resolve(fs, "t", params or {}))


def rule(proto_xml: str, direction: str = "out", action: str = "accept", extra: str = "") -> str:
    return f"<rule action='{action}' direction='{direction}'{extra}>{proto_xml}</rule>"


# ----------------------------------------------------------------------------- rendering

_HEX_LEFT = ("ether.type", "vlan.type", "arp.ptype")


def _expr(e: Any) -> str:
    if isinstance(e, dict):
        ((k, v),) = e.items()
        if k == "payload":
            if "protocol" in v:
                return f"{v['protocol']}.{v['field']}"
            return f"@{v['base']},{v['offset']},{v['len']}"
        simple = {
            "meta": lambda: f"meta.{v['key']}",
            "concat": lambda: "(" + " . ".join(_expr(i) for i in v) + ")",
            "&": lambda: f"{_expr(v[0])}&{_num(v[1])}",
            "|": lambda: f"{_expr(v[0])}|{_num(v[1])}",
            "tcp option": lambda: f"tcpopt({v.get('name', v.get('base'))})",
            "prefix": lambda: f"{v['addr']}/{v['len']}",
            "range": lambda: f"{_expr(v[0])}-{_expr(v[1])}",
            "set": lambda: "{" + ",".join(_num(i) for i in v) + "}",
        }
        return simple[k]()
    if isinstance(e, str) and e.startswith("@"):
        return "@set"
    return str(e)


def _num(v: Any) -> str:
    return hex(v) if isinstance(v, int) else _expr(v)


def _stmt(s: dict[str, Any]) -> str:
    ((k, v),) = s.items()
    if k == "match":
        left, right = _expr(v["left"]), v["right"]
        hexed = isinstance(right, int) and (left in _HEX_LEFT or "&" in left)
        r = hex(right) if hexed else _num(right) if "&" in left else _expr(right)
        return f"{left}{v['op']}{r}"
    if k in ("jump", "goto"):
        return f"{k} {v['target']}"
    if k == "mangle":
        return f"mark={_expr(v['value'])}"
    if k == "vmap":
        return f"{_expr(v['key'])} vmap @map"
    assert v is None, s
    return k


def show(r: list[dict[str, Any]]) -> str:
    return " ".join(_stmt(s) for s in r)


def rendered(c: Contribution, chain: str) -> list[list[dict[str, Any]]]:
    """A chain's rules as the nftables backend renders them."""
    return [rule_expr(r) for r in c.chains[chain]]


def rules(c: Contribution, role: str) -> list[str]:
    return [show(r) for r in rendered(c, c.dispatch[role])]


def tree(c: Contribution, chain: str) -> list[str]:
    """The rules of ``chain``; a jump shows the target's rules inline."""
    out = []
    for r in rendered(c, chain):
        jumps = [s["jump"]["target"] for s in r if "jump" in s]
        if jumps:
            guard = show([s for s in r if "jump" not in s])
            inner = " | ".join(tree(c, jumps[0]))
            out.append(f"{guard} jump[{inner}]".lstrip())
        else:
            out.append(show(r))
    return out


def side(c: Contribution, role: str) -> list[str]:
    return tree(c, c.dispatch[role])


def state_text(stmt: Any) -> str:
    (one,) = render_stmt(stmt)
    return _stmt(one)


ORIG = state_text(ORIGINAL_NEW_OR_ESTABLISHED)  # --ctstate NEW,ESTABLISHED --ctdir Original
REPLY = state_text(REPLY_ESTABLISHED)  # --ctstate ESTABLISHED --ctdir Reply


# ----------------------------------------------------------------------------- clean-traffic

CT_PARAMS = {"MAC": (MAC,), "IP": ("10.0.0.5",)}


def clean_traffic(
    port: str = "vnet3", params: dict[str, tuple[str, ...]] = CT_PARAMS
) -> Contribution:
    return compile_port(port, resolve(builtin_filters(), "clean-traffic", params))


def test_clean_traffic_guest_to_host_is_libvirts_root_chain() -> None:
    # builtin-filters.md §4 "Guest → host (libvirt-I-vnetX)", items 1-9.
    assert side(clean_traffic(), "l2o") == [
        "jump[(meta.iifname . ether.saddr)==@set return | drop]",  # mac (A1, A2)
        (
            "ether.type==0x800 jump["  # ipv4-ip (B1, B2, B3)
            "ether.type==0x800 ip.saddr==0.0.0.0 meta.l4proto==17 return"
            " | ether.type==0x800 (meta.iifname . ip.saddr)==@set return | drop]"
        ),
        "ether.type==0x800 accept",  # C
        (
            "ether.type==0x806 jump["  # arp-mac (E1, E2)
            "ether.type==0x806 (meta.iifname . arp.saddr ether)==@set return | drop]"
        ),
        (
            "ether.type==0x806 jump["  # arp-ip (F1, F2)
            "ether.type==0x806 (meta.iifname . arp.saddr ip)==@set return | drop]"
        ),
        "ether.type==0x806 accept",  # G
        # rarp (L1, M): $MAC in raw RARP fields, looked up in a typeof set
        # (see test_the_rarp_announce_reads_raw_rarp_fields_from_a_shared_set)
        (
            "ether.type==0x8035 jump[ether.type==0x8035 ether.daddr==ff:ff:ff:ff:ff:ff @nh,48,16==3 "
            "@nh,112,32==0 @nh,192,32==0 (meta.iifname . ether.saddr . @nh,64,48 . @nh,144,48)==@set "
            "accept | drop]"
        ),
        "ether.type==0x835 accept",  # K
        "drop",  # H
    ]


def test_clean_traffic_host_to_guest_is_libvirts_root_chain() -> None:
    # builtin-filters.md §4 "Host → guest (libvirt-O-vnetX)", items 1-4.
    assert side(clean_traffic(), "l2i") == [
        "ether.type==0x800 jump[accept]",  # ipv4 (D)
        "ether.type==0x806 accept",  # G
        (  # rarp (L2, M)
            "ether.type==0x8035 jump[ether.type==0x8035 ether.daddr==ff:ff:ff:ff:ff:ff @nh,48,16==3 "
            "@nh,112,32==0 @nh,192,32==0 (meta.oifname . @nh,64,48 . @nh,144,48)==@set accept | drop]"
        ),
        "drop",  # H
    ]


def test_clean_traffic_is_all_ethernet_layer_with_per_port_values_in_sets() -> None:
    c = clean_traffic(params={"MAC": (MAC,), "IP": ("10.0.0.5", "10.0.0.6")})
    assert set(c.dispatch) == {"l2o", "l2i"}  # nothing at the iptables layer
    assert c.fallback_rules == 0  # everything shared, the RARP announce too
    # 2 root chains, 5 guest-side and 2 host-side sub-chains
    assert len(c.chains) == 9
    by_type = sorted(
        (tuple(map(set_key_type, c.sets[s])), sorted(map(tuple, e))) for s, e in c.elements.items()
    )
    mac = int(MAC.replace(":", ""), 16)
    assert by_type == [
        (("ifname", "@nh,64,48", "@nh,144,48"), [("vnet3", mac, mac)]),  # announce in (L2)
        (("ifname", "ether_addr"), [("vnet3", MAC)]),  # no-mac-spoofing
        (("ifname", "ether_addr"), [("vnet3", MAC)]),  # no-arp-mac-spoofing
        (
            ("ifname", "ether_addr", "@nh,64,48", "@nh,144,48"),
            [("vnet3", MAC, mac, mac)],
        ),  # out (L1)
        (("ifname", "ipv4_addr"), [("vnet3", "10.0.0.5"), ("vnet3", "10.0.0.6")]),  # ip
        (("ifname", "ipv4_addr"), [("vnet3", "10.0.0.5"), ("vnet3", "10.0.0.6")]),  # arp
    ]
    assert set(c.sets) == set(c.elements)


def test_the_rarp_announce_reads_raw_rarp_fields_from_a_shared_set() -> None:
    # Bug: written with nft's typed arp payloads, the RARP rules got an implicit "ether type
    # arp" in front and never matched, so clean-traffic dropped qemu's announce. RARP fields
    # are raw loads now, and $MAC in them is an element of a set declared with typeof.
    c = clean_traffic()
    raw_sets = {n: t for n, t in c.sets.items() if any(isinstance(x, RawPayload) for x in t)}
    assert sorted(tuple(map(set_key_type, t)) for t in raw_sets.values()) == [
        ("ifname", "@nh,64,48", "@nh,144,48"),
        ("ifname", "ether_addr", "@nh,64,48", "@nh,144,48"),
    ]
    typeofs = sorted(typeof(t) or "" for t in raw_sets.values())
    assert typeofs == [
        "iifname . @nh,64,48 . @nh,144,48",
        "iifname . ether saddr . @nh,64,48 . @nh,144,48",
    ]
    assert not any(
        "arp." in show(r) for n in c.chains for r in rendered(c, n) if "0x8035" in show(r)
    )


# ----------------------------------------------------------------------------- jumps


def _with_sub(
    root_rule_prio: int, sub_chain: str = "arp", sub_prio: int | None = None
) -> Contribution:
    prio = f" priority='{sub_prio}'" if sub_prio is not None else ""
    fs = filters(
        "<filter name='top' chain='root'><filterref filter='sub'/>"
        + rule("<mac protocolid='arp'/>", extra=f" priority='{root_rule_prio}'")
        + "</filter>",
        f"<filter name='sub' chain='{sub_chain}'{prio}>" + rule("", action="drop") + "</filter>",
    )
    return compile_port("p1", resolve(fs, "top", {}))


@pytest.mark.parametrize(
    ("root_prio", "jump_first"),
    [(-501, False), (-500, True), (-499, True), (500, True), (-1000, False)],
)
def test_sub_chain_jump_sits_before_the_first_root_rule_of_at_least_its_priority(
    root_prio: int, jump_first: bool
) -> None:
    got = side(_with_sub(root_prio), "l2o")
    jump, accept = "ether.type==0x806 jump[drop]", "ether.type==0x806 accept"
    assert got == ([jump, accept] if jump_first else [accept, jump])


@pytest.mark.parametrize(
    ("chain", "guard"),
    [
        ("mac", ""),
        ("mac-x", ""),
        ("stp", "ether.daddr==01:80:c2:00:00:00 "),
        ("vlan", "ether.type==0x8100 "),
        ("arp-ip", "ether.type==0x806 "),
        ("rarp", "ether.type==0x8035 "),
        ("ipv4", "ether.type==0x800 "),
        ("ipv6-x", "ether.type==0x86dd "),
    ],
)
def test_jump_into_a_sub_chain_is_qualified_by_its_prefix(chain: str, guard: str) -> None:
    c = _with_sub(-1000, chain, sub_prio=-900)
    assert side(c, "l2o") == ["ether.type==0x806 accept", f"{guard}jump[drop]"]


def test_sub_chain_jumps_are_ordered_by_chain_priority_not_document_order() -> None:
    fs = filters(
        "<filter name='top'><filterref filter='r'/><filterref filter='a'/>"
        "<filterref filter='v6'/><filterref filter='m'/></filter>",
        "<filter name='r' chain='rarp'>" + rule("", action="drop") + "</filter>",
        "<filter name='a' chain='arp'>" + rule("", action="drop") + "</filter>",
        "<filter name='v6' chain='ipv6'>" + rule("", action="drop") + "</filter>",
        "<filter name='m' chain='mac' priority='-1000'>" + rule("", action="return") + "</filter>",
    )
    got = side(compile_port("p1", resolve(fs, "top", {})), "l2o")
    assert got == [
        "jump[return]",
        "ether.type==0x86dd jump[drop]",
        "ether.type==0x806 jump[drop]",
        "ether.type==0x8035 jump[drop]",
    ]


def test_filters_sharing_a_chain_name_share_one_sub_chain() -> None:
    fs = filters(
        "<filter name='top'><filterref filter='a'/><filterref filter='b'/></filter>",
        "<filter name='a' chain='arp'>"
        + rule("<arp opcode='Request'/>", action="return")
        + "</filter>",
        "<filter name='b' chain='arp'>"
        + rule("", action="drop", extra=" priority='900'")
        + "</filter>",
    )
    got = side(compile_port("p1", resolve(fs, "top", {})), "l2o")
    assert got == ["ether.type==0x806 jump[ether.type==0x806 arp.operation==1 return | drop]"]


def test_a_sub_chain_exists_only_on_the_side_that_has_rules_for_it() -> None:
    fs = filters(
        "<filter name='top'><filterref filter='o'/><filterref filter='i'/></filter>",
        "<filter name='o' chain='ipv4-o'>" + rule("", action="drop") + "</filter>",
        "<filter name='i' chain='ipv4-i'>" + rule("", "in", action="return") + "</filter>",
    )
    c = compile_port("p1", resolve(fs, "top", {}))
    assert side(c, "l2o") == ["ether.type==0x800 jump[drop]"]
    assert side(c, "l2i") == ["ether.type==0x800 jump[return]"]
    assert len(c.chains) == 4


def test_chains_without_sets_are_pure_content_and_shared_between_sides() -> None:
    c = compile_xml(rule("<mac protocolid='arp'/>", "inout"))
    assert c.dispatch["l2o"] == c.dispatch["l2i"] and len(c.chains) == 1


# ----------------------------------------------------------------------------- directions


def test_out_and_in_ethernet_rules_go_to_one_side_each() -> None:
    c = compile_xml(rule("<mac protocolid='ipv4'/>") + rule("<mac protocolid='arp'/>", "in"))
    assert rules(c, "l2o") == ["ether.type==0x800 accept"]
    assert rules(c, "l2i") == ["ether.type==0x806 accept"]
    assert "l4o" not in c.dispatch and "l4i" not in c.dispatch


@pytest.mark.parametrize(
    ("proto", "literal", "mirrored"),
    [
        (
            (
                "<mac srcmacaddr='52:54:00:00:00:01' srcmacmask='ff:ff:ff:ff:ff:00'"
                " dstmacaddr='52:54:00:00:00:02'/>"
            ),
            "ether.saddr&ff:ff:ff:ff:ff:00==52:54:00:00:00:00 ether.daddr==52:54:00:00:00:02",
            "ether.daddr&ff:ff:ff:ff:ff:00==52:54:00:00:00:00 ether.saddr==52:54:00:00:00:02",
        ),
        (
            (
                "<ip srcipaddr='10.0.0.1' dstipaddr='10.0.0.2' protocol='tcp'"
                " srcportstart='1000' srcportend='2000' dstportstart='80'/>"
            ),
            (
                "ether.type==0x800 ip.saddr==10.0.0.1 ip.daddr==10.0.0.2 meta.l4proto==6"
                " th.sport==1000-2000 th.dport==80"
            ),
            (
                "ether.type==0x800 ip.daddr==10.0.0.1 ip.saddr==10.0.0.2 meta.l4proto==6"
                " th.dport==1000-2000 th.sport==80"
            ),
        ),
        (
            "<ipv6 srcipaddr='fe80::1' srcipmask='64' dstipaddr='fe80::2'/>",
            "ether.type==0x86dd ip6.saddr==fe80::/64 ip6.daddr==fe80::2",
            "ether.type==0x86dd ip6.daddr==fe80::/64 ip6.saddr==fe80::2",
        ),
        (
            (
                "<arp arpsrcmacaddr='52:54:00:00:00:01' arpdstmacaddr='52:54:00:00:00:02'"
                " arpsrcipaddr='10.0.0.1' arpsrcipmask='24' arpdstipaddr='10.0.0.2'/>"
            ),
            (
                "ether.type==0x806 arp.saddr ether==52:54:00:00:00:01"
                " arp.daddr ether==52:54:00:00:00:02 arp.saddr ip==10.0.0.0/24 arp.daddr ip==10.0.0.2"
            ),
            (
                "ether.type==0x806 arp.daddr ether==52:54:00:00:00:01"
                " arp.saddr ether==52:54:00:00:00:02 arp.daddr ip==10.0.0.0/24 arp.saddr ip==10.0.0.2"
            ),
        ),
    ],
)
def test_inout_ethernet_rules_are_mirrored_on_the_guest_side(
    proto: str, literal: str, mirrored: str
) -> None:
    c = compile_xml(rule(proto, "inout"))
    assert rules(c, "l2i") == [f"{literal} accept"]  # written from the guest's receiving view
    assert rules(c, "l2o") == [f"{mirrored} accept"]


def test_stp_inout_with_source_mac_cannot_be_mirrored() -> None:
    with pytest.raises(CompileError, match="STP filtering in inout direction"):
        compile_xml(rule("<stp srcmacaddr='52:54:00:00:00:01'/>", "inout"))
    c = compile_xml(rule("<stp type='0'/>", "inout"))
    assert rules(c, "l2o") == rules(c, "l2i")


# ----------------------------------------------------------------------------- L4 copies

LIT = "ip.saddr==10.0.0.1 tcp.dport==80"  # the rule as written
MIR = "ip.daddr==10.0.0.1 tcp.sport==80"  # source and destination swapped
TCP = "<tcp srcipaddr='10.0.0.1' dstportstart='80'{state}/>"
NEW_EST = state_text(CtState(("NEW", "ESTABLISHED")))


def _copies(
    direction: str, action: str, statematch: bool = True, state: str | None = None
) -> dict[str, str]:
    extra = "" if statematch else " statematch='false'"
    proto = TCP.format(state=f" state='{state}'" if state else "")
    c = compile_xml(rule(proto, direction, action, extra))
    assert not {"l2o", "l2i"} & set(c.dispatch)
    out = {}
    for role in ("l4o", "l4i"):
        if role in c.dispatch:
            [text] = rules(c, role)
            assert text.startswith("ether.type==0x800 meta.l4proto==6 ")
            out[role] = text.removeprefix("ether.type==0x800 meta.l4proto==6 ")
    return out


# ebiptables-layout.md §4.3, default case (l4o = FI + HI, l4i = FO).
@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("out", {"l4o": f"{LIT} {ORIG} accept", "l4i": f"{MIR} {REPLY} accept"}),
        ("in", {"l4o": f"{MIR} {REPLY} accept", "l4i": f"{LIT} {ORIG} accept"}),
        ("inout", {"l4o": f"{MIR} accept", "l4i": f"{LIT} accept"}),
    ],
)
def test_accept_copies_with_connection_state(direction: str, expected: dict[str, str]) -> None:
    assert _copies(direction, "accept") == expected


@pytest.mark.parametrize("action", ["drop", "return", "continue"])
@pytest.mark.parametrize(
    ("direction", "o", "i"), [("out", LIT, MIR), ("in", MIR, LIT), ("inout", MIR, LIT)]
)
def test_other_actions_get_both_copies_without_state(
    action: str, direction: str, o: str, i: str
) -> None:
    assert _copies(direction, action) == {"l4o": f"{o} {action}", "l4i": f"{i} {action}"}


@pytest.mark.parametrize(
    ("direction", "o", "i"), [("out", LIT, MIR), ("in", MIR, LIT), ("inout", MIR, LIT)]
)
@pytest.mark.parametrize("state", [None, "NEW"])  # an explicit state is ignored then
def test_statematch_false_gives_both_copies_without_state(
    direction: str, o: str, i: str, state: str | None
) -> None:
    got = _copies(direction, "accept", statematch=False, state=state)
    assert got == {"l4o": f"{o} accept", "l4i": f"{i} accept"}


@pytest.mark.parametrize("action", ["accept", "drop"])
@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("out", {"l4o": f"{LIT} {NEW_EST}"}),
        ("in", {"l4i": f"{LIT} {NEW_EST}"}),
        ("inout", {"l4o": f"{MIR} {NEW_EST}", "l4i": f"{LIT} {NEW_EST}"}),
    ],
)
def test_explicit_state_gives_primary_copies_with_that_state_for_every_action(
    action: str, direction: str, expected: dict[str, str]
) -> None:
    got = _copies(direction, action, state="NEW,ESTABLISHED")
    assert got == {role: f"{text} {action}" for role, text in expected.items()}


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("out", {"l4o": LIT}), ("in", {"l4i": LIT}), ("inout", {"l4o": MIR, "l4i": LIT})],
)
def test_state_none_gives_primary_copies_without_state(
    direction: str, expected: dict[str, str]
) -> None:
    got = _copies(direction, "accept", state="NONE")
    assert got == {role: f"{text} accept" for role, text in expected.items()}


def test_explicit_state_list_becomes_mark_bits() -> None:
    got = _copies("in", "accept", state="RELATED,ESTABLISHED")
    bits = marks.RELATED | marks.ESTABLISHED
    assert got == {"l4i": f"{LIT} meta.mark&{hex(bits)}!=0x0 accept"}


ICMP = "ether.type==0x800 meta.l4proto==1 icmp.type==8"


@pytest.mark.parametrize(
    ("direction", "action", "expected"),
    [
        ("out", "accept", {"l4o": f"{ICMP} {NEW_EST} accept"}),
        ("in", "accept", {"l4i": f"{ICMP} {NEW_EST} accept"}),
        ("out", "drop", {"l4o": f"{ICMP} drop"}),
        ("in", "drop", {"l4i": f"{ICMP} drop"}),
    ],
)
def test_icmp_with_type_gets_only_primary_copies_without_direction(
    direction: str, action: str, expected: dict[str, str]
) -> None:
    c = compile_xml(rule("<icmp type='8'/>", direction, action))
    assert {role: rules(c, role)[0] for role in c.dispatch} == expected


def test_icmp_without_type_is_copied_like_any_rule() -> None:
    c = compile_xml(rule("<icmp srcipaddr='10.0.0.1'/>"))
    assert rules(c, "l4o") == [
        f"ether.type==0x800 meta.l4proto==1 ip.saddr==10.0.0.1 {ORIG} accept"
    ]
    assert rules(c, "l4i") == [
        f"ether.type==0x800 meta.l4proto==1 ip.daddr==10.0.0.1 {REPLY} accept"
    ]


def test_icmpv6_with_type_gets_only_the_primary_copy() -> None:
    c = compile_xml(rule("<icmpv6 type='135'/>", "in", "drop"))
    assert {role: rules(c, role) for role in c.dispatch} == {
        "l4i": ["ether.type==0x86dd meta.l4proto==58 icmpv6.type==135 drop"]
    }


def test_source_mac_is_dropped_from_mirrored_copies() -> None:
    c = compile_xml(rule(f"<tcp srcmacaddr='{MAC}' dstportstart='80'/>"))
    assert rules(c, "l4o") == [
        f"ether.type==0x800 meta.l4proto==6 ether.saddr=={MAC} tcp.dport==80 {ORIG} accept"
    ]
    assert rules(c, "l4i") == [f"ether.type==0x800 meta.l4proto==6 tcp.sport==80 {REPLY} accept"]


@pytest.mark.parametrize("direction", ["out", "in", "inout"])
def test_mirrored_copy_whose_only_match_was_the_source_mac_is_omitted(direction: str) -> None:
    c = compile_xml(rule(f"<udp srcmacaddr='{MAC}'/>", direction, "drop"))
    primary = {"out": "l4o", "in": "l4i", "inout": "l4i"}[direction]
    assert set(c.dispatch) == {primary}
    assert rules(c, primary) == [f"ether.type==0x800 meta.l4proto==17 ether.saddr=={MAC} drop"]


def test_source_mac_variable_is_dropped_from_the_mirrored_copy_too() -> None:
    c = compile_xml(rule("<tcp srcmacaddr='$MAC' dstportstart='22'/>", "in"), {"MAC": (MAC,)})
    assert rules(c, "l4i") == [
        (
            f"ether.type==0x800 meta.l4proto==6 tcp.dport==22 (meta.oifname . ether.saddr)==@set {ORIG}"
            " accept"
        )
    ]
    assert rules(c, "l4o") == [f"ether.type==0x800 meta.l4proto==6 tcp.sport==22 {REPLY} accept"]


# ----------------------------------------------------------------------------- actions


def test_reject_is_drop_at_the_ethernet_layer_and_a_reject_mark_at_l4() -> None:
    c = compile_xml(
        rule("<mac protocolid='ipv6'/>", action="reject")
        + rule("<udp dstportstart='53'/>", action="reject")
    )
    assert rules(c, "l2o") == ["ether.type==0x86dd drop"]
    mark = f"mark=meta.mark|{hex(marks.REJECT)} accept"
    assert rules(c, "l4o") == [f"ether.type==0x800 meta.l4proto==17 udp.dport==53 {mark}"]
    assert rules(c, "l4i") == [f"ether.type==0x800 meta.l4proto==17 udp.sport==53 {mark}"]


@pytest.mark.parametrize("action", ["accept", "drop", "return", "continue"])
def test_ethernet_actions_are_nft_verdicts(action: str) -> None:
    assert rules(compile_xml(rule("", action=action)), "l2o") == [action]


# ----------------------------------------------------------------------------- protocols

# One case per protocol: the rule compiles and its rule text holds the expected fields.
PROTOCOL_CASES = [
    (
        "mac",
        (
            "<mac srcmacaddr='52:54:00:AB:cd:01' dstmacaddr='ff:ff:ff:ff:ff:ff'"
            " protocolid='0x0806'/>"
        ),
        "ether.saddr==52:54:00:ab:cd:01 ether.daddr==ff:ff:ff:ff:ff:ff ether.type==0x806",
    ),
    ("mac-name", "<mac protocolid='ipv6'/>", "ether.type==0x86dd"),
    (
        "vlan",
        "<vlan vlanid='42' encap-protocol='ipv4'/>",
        "ether.type==0x8100 vlan.id==42 vlan.type==0x800",
    ),
    (
        "stp",
        "<stp srcmacaddr='52:54:00:00:00:01' type='0x80' flags='1'/>",
        (
            "ether.daddr==01:80:c2:00:00:00 @ll,112,24==4342275 ether.saddr==52:54:00:00:00:01"
            " @ll,160,8==128 @ll,168,8==1"
        ),
    ),
    (
        "stp-config",
        (
            "<stp root-priority='4096' root-priority-hi='8192' root-cost='10'"
            " root-cost-hi='20' port='1' port-hi='2' age='1' max-age='20' hello-time='2'"
            " forward-delay='15' sender-priority='7'/>"
        ),
        (
            "@ll,160,8==0 @ll,176,16==4096-8192 @ll,240,32==10-20 @ll,272,16==7 @ll,336,16==1-2"
            " @ll,352,16==1 @ll,368,16==20 @ll,384,16==2 @ll,400,16==15"
        ),
    ),
    (
        "stp-addresses",
        (
            "<stp root-address='00:11:22:33:44:55' root-address-mask='ff:ff:ff:00:00:00'"
            " sender-address='00:11:22:33:44:55'/>"
        ),
        "@ll,192,48&0xffffff000000==0x1122000000 @ll,288,48==73588229205",
    ),
    (
        "arp",
        (
            "<arp hwtype='1' protocoltype='0x800' opcode='Request'"
            " arpsrcmacaddr='52:54:00:00:00:01' arpdstipaddr='10.0.0.2' arpdstipmask='16'/>"
        ),
        (
            "ether.type==0x806 arp.htype==1 arp.ptype==0x800 arp.operation==1"
            " arp.saddr ether==52:54:00:00:00:01 arp.daddr ip==10.0.0.0/16"
        ),
    ),
    (
        "rarp",
        "<rarp opcode='Request_Reverse' arpsrcipaddr='0.0.0.0'/>",
        "ether.type==0x8035 @nh,48,16==3 @nh,112,32==0",
    ),
    (
        "ip",
        (
            "<ip srcipaddr='10.0.0.1' srcipmask='255.255.255.0' protocol='tcp'"
            " dstportstart='80' dstportend='90' dscp='46'/>"
        ),
        "ether.type==0x800 ip.saddr==10.0.0.0/24 meta.l4proto==6 th.dport==80-90 ip.dscp==46",
    ),
    (
        "ipv6",
        (
            "<ipv6 srcipaddr='fe80::1' srcipmask='10' dstipaddr='ff02::1:2' protocol='udp'"
            " srcportstart='546'/>"
        ),
        "ether.type==0x86dd ip6.saddr==fe80::/10 ip6.daddr==ff02::1:2 meta.l4proto==17 th.sport==546",
    ),
    (
        "ipv6-icmp-ranges",
        "<ipv6 type='1' typeend='4' code='0' codeend='3'/>",
        "ether.type==0x86dd meta.l4proto==58 icmpv6.type==1-4 icmpv6.code==0-3",
    ),
    ("ipv6-icmp-type", "<ipv6 protocol='icmpv6' type='135'/>", "meta.l4proto==58 icmpv6.type==135"),
    (
        "tcp",
        (
            "<tcp srcipaddr='10.0.0.1' dstipaddr='10.0.0.0' dstipmask='8' srcportstart='1'"
            " srcportend='1023' dstportstart='22' dscp='8'/>"
        ),
        (
            "ether.type==0x800 meta.l4proto==6 ip.saddr==10.0.0.1 ip.daddr==10.0.0.0/8 ip.dscp==8"
            " tcp.sport==1-1023 tcp.dport==22"
        ),
    ),
    ("tcp-flags", "<tcp flags='SYN,ACK/SYN'/>", "tcp.flags&0x12==0x2"),
    ("tcp-flags-all", "<tcp flags='ALL/NONE'/>", "tcp.flags&0x3f==0x0"),
    ("tcp-option", "<tcp option='2'/>", "tcpopt(maxseg)==2"),
    (
        "tcp-iprange",
        "<tcp srcipfrom='10.0.0.1' srcipto='10.0.0.9' dstipfrom='10.0.1.1'/>",
        "ip.saddr==10.0.0.1-10.0.0.9 ip.daddr==10.0.1.1",
    ),
    ("udp", "<udp dstportstart='53'/>", "ether.type==0x800 meta.l4proto==17 udp.dport==53"),
    ("udplite", "<udplite srcipaddr='10.0.0.1'/>", "meta.l4proto==136 ip.saddr==10.0.0.1"),
    ("sctp", "<sctp dstportstart='9' dstportend='10'/>", "meta.l4proto==132 sctp.dport==9-10"),
    ("icmp", "<icmp type='3' code='4'/>", "meta.l4proto==1 icmp.type==3 icmp.code==4"),
    ("igmp", "<igmp dstipaddr='224.0.0.1'/>", "meta.l4proto==2 ip.daddr==224.0.0.1"),
    ("esp", "<esp srcipaddr='10.0.0.1'/>", "meta.l4proto==50 ip.saddr==10.0.0.1"),
    ("ah", "<ah srcipaddr='10.0.0.1'/>", "meta.l4proto==51 ip.saddr==10.0.0.1"),
    ("all", "<all srcipaddr='10.0.0.1'/>", "ether.type==0x800 ip.saddr==10.0.0.1 "),
    (
        "tcp-ipv6",
        "<tcp-ipv6 srcipaddr='2001:db8::1' srcipmask='64' dstportstart='443'/>",
        "ether.type==0x86dd meta.l4proto==6 ip6.saddr==2001:db8::/64 tcp.dport==443",
    ),
    (
        "udp-ipv6",
        "<udp-ipv6 dstportstart='53'/>",
        "ether.type==0x86dd meta.l4proto==17 udp.dport==53",
    ),
    (
        "sctp-ipv6",
        "<sctp-ipv6 dstportstart='9'/>",
        "ether.type==0x86dd meta.l4proto==132 sctp.dport==9",
    ),
    (
        "udplite-ipv6",
        "<udplite-ipv6 dstipaddr='2001:db8::2'/>",
        "ether.type==0x86dd meta.l4proto==136 ip6.daddr==2001:db8::2",
    ),
    ("esp-ipv6", "<esp-ipv6 srcipaddr='2001:db8::1'/>", "ether.type==0x86dd meta.l4proto==50"),
    ("ah-ipv6", "<ah-ipv6 srcipaddr='2001:db8::1'/>", "ether.type==0x86dd meta.l4proto==51"),
    (
        "all-ipv6",
        "<all-ipv6 srcipaddr='2001:db8::1'/>",
        "ether.type==0x86dd ip6.saddr==2001:db8::1 ",
    ),
    (
        "icmpv6",
        "<icmpv6 type='128' code='0'/>",
        "ether.type==0x86dd meta.l4proto==58 icmpv6.type==128 icmpv6.code==0",
    ),
    ("no-protocol", "", ""),
]


@pytest.mark.parametrize(
    ("case", "proto", "expected"), PROTOCOL_CASES, ids=[c[0] for c in PROTOCOL_CASES]
)
def test_every_protocol_compiles(case: str, proto: str, expected: str) -> None:
    c = compile_xml(rule(proto, extra=" statematch='false'"))
    role = "l4o" if "l4o" in c.dispatch else "l2o"
    [text] = rules(c, role)
    assert expected in text
    assert text.endswith("accept")


def test_protocol_names_and_aliases_are_covered() -> None:
    from nwguard.model.protocols import PROTOCOLS

    covered = {c[1].split()[0].removeprefix("<").rstrip("/>") for c in PROTOCOL_CASES if c[1]}
    assert covered == set(PROTOCOLS)


def test_ipv4_alias_elements_compile_like_their_targets() -> None:
    for alias, target in [
        ("ipv4", "ip"),
        ("tcp-ipv4", "tcp"),
        ("udp-ipv4", "udp"),
        ("icmp-ipv4", "icmp"),
    ]:
        a = compile_xml(rule(f"<{alias} srcipaddr='10.0.0.1'/>"))
        b = compile_xml(rule(f"<{target} srcipaddr='10.0.0.1'/>"))
        assert a.chains == b.chains, alias


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("proto", "expected"),
    [
        ("<mac match='no' srcmacaddr='52:54:00:00:00:01'/>", "ether.saddr!=52:54:00:00:00:01"),
        (
            "<mac match='no' srcmacaddr='52:54:00:00:00:01' srcmacmask='ff:ff:ff:ff:ff:00'/>",
            "ether.saddr&ff:ff:ff:ff:ff:00!=52:54:00:00:00:00",
        ),
        ("<ip match='no' srcipaddr='10.0.0.0' srcipmask='8'/>", "ip.saddr!=10.0.0.0/8"),
        ("<ip match='no' protocol='udp'/>", "meta.l4proto!=17"),
        ("<arp match='no' opcode='Reply'/>", "arp.operation!=2"),
        ("<vlan match='no' vlanid='5'/>", "ether.type==0x8100 vlan.id!=5"),
        ("<udp match='no' srcportstart='10' srcportend='20'/>", "udp.sport!=10-20"),
        ("<tcp match='no' flags='SYN/SYN'/>", "tcp.flags&0x2!=0x2"),
        ("<tcp match='no' option='8'/>", "tcpopt(timestamp)!=8"),
        ("<icmp match='no' type='8'/>", "icmp.type!=8"),
        (
            "<tcp-ipv6 match='no' srcipaddr='2001:db8::' srcipmask='32'/>",
            "ip6.saddr!=2001:db8::/32",
        ),
        ("<stp match='no' root-priority='1' root-priority-hi='9'/>", "@ll,176,16!=1-9"),
    ],
)
def test_negation_turns_every_attribute_of_the_element_into_not_equal(
    proto: str, expected: str
) -> None:
    c = compile_xml(rule(proto, extra=" statematch='false'"))
    role = "l4o" if "l4o" in c.dispatch else "l2o"
    [text] = rules(c, role)
    assert expected in text
    assert text.count("!=") == expected.count("!=")  # the implied guards stay positive


def test_negation_per_element_mixes_positive_and_negative() -> None:
    c = compile_xml(
        rule(f"<arp match='no' arpsrcmacaddr='{MAC}'/><arp opcode='Request'/>", action="drop")
    )
    assert rules(c, "l2o") == [f"ether.type==0x806 arp.operation==1 arp.saddr ether!={MAC} drop"]


@pytest.mark.parametrize(
    ("proto", "expected"),
    [
        ("<ip srcipaddr='10.1.2.3' srcipmask='32'/>", "ip.saddr==10.1.2.3 "),  # /32: plain address
        ("<ip srcipaddr='10.1.2.3' srcipmask='0'/>", "ip.saddr==0.0.0.0/0"),
        ("<ip dstipaddr='10.1.2.3' dstipmask='255.255.0.0'/>", "ip.daddr==10.1.0.0/16"),
        ("<ipv6 srcipaddr='2001:db8::1' srcipmask='128'/>", "ip6.saddr==2001:db8::1 "),
        ("<arp arpsrcipaddr='10.1.2.3' arpsrcipmask='8'/>", "arp.saddr ip==10.0.0.0/8"),
        (
            "<mac dstmacaddr='01:00:5e:00:00:01' dstmacmask='ff:ff:ff:80:00:00'/>",
            "ether.daddr&ff:ff:ff:80:00:00==01:00:5e:00:00:00",
        ),
    ],
)
def test_masks_become_prefixes_or_bitwise_matches(proto: str, expected: str) -> None:
    [text] = rules(compile_xml(rule(proto)), "l2o")
    assert expected in text


def test_hex_and_decimal_numbers_compile_to_the_same_value() -> None:
    a = compile_xml(rule("<tcp dstportstart='0x50' dscp='0x2e'/>"))
    b = compile_xml(rule("<tcp dstportstart='80' dscp='46'/>"))
    assert a.chains == b.chains


# ----------------------------------------------------------------------------- variables


def _sets(c: Contribution) -> list[tuple[tuple[str, ...], list[tuple[str, ...]]]]:
    return sorted((tuple(c.sets[s]), sorted(map(tuple, e))) for s, e in c.elements.items())


@pytest.mark.parametrize(
    ("proto", "direction", "params", "lookup", "set_type", "values"),
    [
        (
            "<mac srcmacaddr='$M'/>",
            "out",
            {"M": ("52:54:00:AA:BB:CC",)},
            "(meta.iifname . ether.saddr)==@set",
            "ether_addr",
            [("52:54:00:aa:bb:cc",)],
        ),
        (
            "<ip dstipaddr='$IP'/>",
            "in",
            {"IP": ("10.0.0.1", "10.0.0.2")},
            "(meta.oifname . ip.daddr)==@set",
            "ipv4_addr",
            [("10.0.0.1",), ("10.0.0.2",)],
        ),
        (
            "<ipv6 srcipaddr='$V6'/>",
            "out",
            {"V6": ("2001:DB8:0::1",)},
            "(meta.iifname . ip6.saddr)==@set",
            "ipv6_addr",
            [("2001:db8::1",)],
        ),
        (
            "<arp arpsrcipaddr='$IP'/>",
            "out",
            {"IP": ("10.0.0.1",)},
            "(meta.iifname . arp.saddr ip)==@set",
            "ipv4_addr",
            [("10.0.0.1",)],
        ),
        (
            "<arp arpdstmacaddr='$M'/>",
            "in",
            {"M": (MAC,)},
            "(meta.oifname . arp.daddr ether)==@set",
            "ether_addr",
            [(MAC,)],
        ),
        (
            "<ip protocol='tcp' dstportstart='$P'/>",
            "out",
            {"P": ("80", "0x1bb")},
            "(meta.iifname . th.dport)==@set",
            "inet_service",
            [("443",), ("80",)],
        ),
    ],
)
def test_ethernet_variables_become_set_lookups_keyed_by_the_port(
    proto: str,
    direction: str,
    params: dict[str, tuple[str, ...]],
    lookup: str,
    set_type: str,
    values: list[tuple[str, ...]],
) -> None:
    c = compile_xml(rule(proto, direction), params, port="vnet7")
    role = "l2o" if direction == "out" else "l2i"
    [text] = rules(c, role)
    assert lookup in text
    assert _sets(c) == [(("ifname", set_type), [("vnet7", *v) for v in values])]
    assert c.fallback_rules == 0


def test_l4_variables_are_keyed_by_iifname_on_the_guest_side_and_oifname_on_the_other() -> None:
    c = compile_xml(
        rule("<tcp srcipaddr='$IP' dstportstart='$P'/>"),
        {"IP": ("10.0.0.1", "10.0.0.2"), "P": ("22", "80")},
        port="vnet7",
    )
    [o] = rules(c, "l4o")
    [i] = rules(c, "l4i")
    assert "(meta.iifname . ip.saddr . tcp.dport)==@set" in o
    assert "(meta.oifname . ip.daddr . tcp.sport)==@set" in i
    pairs = [("vnet7", "10.0.0.1", "22"), ("vnet7", "10.0.0.2", "80")]  # parallel: @0 both
    assert _sets(c) == [(("ifname", "ipv4_addr", "inet_service"), pairs)] * 2


def test_cross_product_of_iterators_fills_one_concatenated_set() -> None:
    c = compile_xml(
        rule("<udp srcipaddr='$A[@1]' srcportstart='$B[@2]'/>"),
        {"A": ("1.1.1.1", "2.2.2.2", "3.3.3.3"), "B": ("80", "90", "80")},
    )
    expected = sorted(("p1", a, b) for a in ("1.1.1.1", "2.2.2.2", "3.3.3.3") for b in ("80", "90"))
    assert len(c.elements) == 2  # the literal and the mirrored copy, one set each
    for elements in c.elements.values():
        assert sorted(map(tuple, elements)) == expected


def test_two_value_sets_and_literals_in_one_rule() -> None:
    c = compile_xml(
        rule("<ip srcipaddr='$IP' dstipaddr='10.9.9.9' protocol='udp'/>"), {"IP": ("10.0.0.1",)}
    )
    assert rules(c, "l2o") == [
        "ether.type==0x800 ip.daddr==10.9.9.9 meta.l4proto==17 (meta.iifname . ip.saddr)==@set accept"
    ]


def test_a_bad_variable_value_is_an_error_naming_variable_and_attribute() -> None:
    with pytest.raises(
        ResolveError, match=r"variable IP value 'nonsense' is not valid for ip srcipaddr"
    ):
        compile_xml(rule("<ip srcipaddr='$IP'/>"), {"IP": ("nonsense",)})
    with pytest.raises(ResolveError, match="variable P value '70000'"):
        compile_xml(rule("<tcp dstportstart='$P'/>"), {"P": ("70000",)})


def test_a_negated_single_value_variable_is_a_not_in_set_lookup() -> None:
    c = compile_xml(rule("<mac match='no' srcmacaddr='$MAC'/>", action="drop"), {"MAC": (MAC,)})
    assert rules(c, "l2o") == ["(meta.iifname . ether.saddr)!=@set drop"]
    assert c.fallback_rules == 0


def test_a_negated_list_variable_falls_back_to_one_literal_rule_per_value() -> None:
    # libvirt emits one rule per value, each "!= that value": with two different MACs the
    # drop matches every frame. A "not in set" lookup would mean something else.
    macs = ("52:54:00:00:00:01", "52:54:00:00:00:02")
    c = compile_xml(rule("<mac match='no' srcmacaddr='$MAC'/>", action="drop"), {"MAC": macs})
    assert rules(c, "l2o") == [f"ether.saddr!={m} drop" for m in macs]
    assert c.fallback_rules == 1
    assert c.sets == {} and c.elements == {}
    other = compile_xml(
        rule("<mac match='no' srcmacaddr='$MAC'/>", action="drop"),
        {"MAC": ("52:54:00:00:00:03", "52:54:00:00:00:04")},
    )
    assert set(other.chains).isdisjoint(c.chains)  # per-port literal chains


def test_a_negated_variable_beside_a_list_variable_falls_back_too() -> None:
    c = compile_xml(
        rule("<ip match='no' srcipaddr='$A'/><ip dstipaddr='$B[@1]'/>", action="drop"),
        {"A": ("10.0.0.1",), "B": ("10.0.0.8", "10.0.0.9")},
    )
    assert rules(c, "l2o") == [
        "ether.type==0x800 ip.saddr!=10.0.0.1 ip.daddr==10.0.0.8 drop",
        "ether.type==0x800 ip.saddr!=10.0.0.1 ip.daddr==10.0.0.9 drop",
    ]
    assert c.fallback_rules == 1


@pytest.mark.parametrize(
    ("proto", "params", "expected"),
    [
        (
            "<ip srcipaddr='$IP' srcipmask='24'/>",
            {"IP": ("10.1.0.1", "10.2.0.1")},
            ["ip.saddr==10.1.0.0/24", "ip.saddr==10.2.0.0/24"],
        ),
        (
            "<mac protocolid='$T'/>",
            {"T": ("0x0800", "arp")},
            ["ether.type==0x800", "ether.type==0x806"],
        ),
        ("<tcp dstportstart='$P' dstportend='90'/>", {"P": ("80",)}, ["tcp.dport==80-90"]),
        ("<arp opcode='$OP'/>", {"OP": ("Reply",)}, ["arp.operation==2"]),
        ("<tcp flags='$F'/>", {"F": ("SYN/SYN",)}, ["tcp.flags&0x2==0x2"]),
    ],
)
def test_variables_that_cannot_be_set_lookups_are_expanded_per_port(
    proto: str, params: dict[str, tuple[str, ...]], expected: list[str]
) -> None:
    c = compile_xml(rule(proto, action="drop"), params)
    role = "l4o" if "l4o" in c.dispatch else "l2o"
    got = rules(c, role)
    assert len(got) == len(expected)
    for text, want in zip(got, expected, strict=True):
        assert want in text
    assert c.fallback_rules == len(c.dispatch) and c.sets == {}  # one per rule copy


# ----------------------------------------------------------------------------- unsupported


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        ("<tcp ipset='blocked' ipsetflags='src'/>", "attribute 'ipset' is not supported"),
        ("<udp-ipv6 ipset='blocked' ipsetflags='src,dst'/>", "'ipset' is not supported"),
        ("<tcp connlimit-above='10'/>", "attribute 'connlimit-above' is not supported"),
        ("<arp gratuitous='true'/>", "gratuitous='true' cannot be expressed in nftables"),
        ("<rarp gratuitous='yes'/>", "gratuitous='true' cannot be expressed"),
    ],
)
def test_what_only_iptables_can_say_compiles_and_nftables_refuses_by_name(
    proto: str, message: str
) -> None:
    c = compile_xml(rule(proto, action="drop"))  # the IR holds it (the iptables backend spells it)
    assert c.chains
    with pytest.raises(CompileError, match=message):
        for chain in c.chains.values():
            for r in chain:
                rule_expr(r)


def test_a_tcp_option_from_a_variable_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="tcp option cannot come from a variable"):
        compile_xml(rule("<tcp option='$O'/>", action="drop"), {"O": ("2",)})


def test_gratuitous_false_is_ignored_as_in_libvirt() -> None:
    c = compile_xml(rule("<arp gratuitous='false' opcode='Request'/>"))
    assert rules(c, "l2o") == ["ether.type==0x806 arp.operation==1 accept"]


# ----------------------------------------------------------------------------- sharing


def test_ports_with_one_filter_and_different_values_share_every_chain() -> None:
    a = clean_traffic("vnet0", {"MAC": ("52:54:00:00:00:01",), "IP": ("10.0.0.1",)})
    b = clean_traffic("vnet1", {"MAC": ("52:54:00:00:00:02",), "IP": ("10.0.0.2", "10.0.0.3")})
    assert a.chains == b.chains
    assert a.sets == b.sets and a.dispatch == b.dispatch
    assert set(a.elements) == set(b.elements)
    for s in a.elements:
        assert {e[0] for e in a.elements[s]} == {"vnet0"}
        assert {e[0] for e in b.elements[s]} == {"vnet1"}
    assert a.elements != b.elements


def test_port_compiler_fast_path_equals_a_full_compile() -> None:
    pc = PortCompiler(builtin_filters())
    first = pc.compile("vnet0", "clean-traffic", {"MAC": (MAC,), "IP": ("10.0.0.1",)})
    params = {"MAC": ("52:54:00:00:00:09",), "IP": ("10.0.0.9",)}
    fast = pc.compile("vnet9", "clean-traffic", params)
    full = clean_traffic("vnet9", params)
    assert (fast.chains, fast.sets, fast.elements, fast.dispatch) == (
        full.chains,
        full.sets,
        full.elements,
        full.dispatch,
    )
    assert first.chains == full.chains


def test_port_compiler_recompiles_when_a_list_changes_length() -> None:
    pc = PortCompiler(builtin_filters())
    pc.compile("vnet0", "clean-traffic", {"MAC": (MAC,), "IP": ("10.0.0.1",)})
    two = {"MAC": (MAC,), "IP": ("10.0.0.1", "10.0.0.2")}
    assert (
        pc.compile("vnet1", "clean-traffic", two).elements == clean_traffic("vnet1", two).elements
    )


def test_port_compiler_fallback_ports_are_compiled_in_full() -> None:
    fs = filters(
        "<filter name='t'>"
        + rule("<mac match='no' srcmacaddr='$MAC'/>", action="drop")
        + "</filter>"
    )
    pc = PortCompiler(fs)
    a = pc.compile("p1", "t", {"MAC": ("52:54:00:00:00:01", "52:54:00:00:00:02")})
    b = pc.compile("p2", "t", {"MAC": ("52:54:00:00:00:03", "52:54:00:00:00:04")})
    assert a.fallback_rules == b.fallback_rules == 1
    assert rules(b, "l2o") == [
        "ether.saddr!=52:54:00:00:00:03 drop",
        "ether.saddr!=52:54:00:00:00:04 drop",
    ]


def test_l4_rules_share_one_chain_per_side_in_sorted_order() -> None:
    fs = filters(
        "<filter name='top'><filterref filter='v4'/>"
        + rule("<udp dstportstart='53'/>", action="drop", extra=" priority='900'")
        + rule("<tcp-ipv6 dstportstart='22'/>", action="drop", extra=" priority='100'")
        + "</filter>",
        "<filter name='v4' chain='ipv4'>"
        + rule("<tcp dstportstart='25'/>", action="drop", extra=" priority='-900'")
        + "</filter>",
    )
    c = compile_port("p1", resolve(fs, "top", {}))
    assert rules(c, "l4o") == [
        "ether.type==0x86dd meta.l4proto==6 tcp.dport==22 drop",
        "ether.type==0x800 meta.l4proto==17 udp.dport==53 drop",
        "ether.type==0x800 meta.l4proto==6 tcp.dport==25 drop",  # non-root chain: last
    ]


# ----------------------------------------------------------------------------- regressions


def test_equal_subchains_with_different_variables_do_not_share_sets() -> None:
    """Two sub-chains of one port with equal rules but different variables used to get the
    same content-addressed name and so one set holding both values: ``ipv4-a`` (src must be
    $A) and ``ipv4-b`` (src must be $B) then each let $A *or* $B through."""
    fs = filters(
        "<filter name='top' chain='root'><filterref filter='a'/><filterref filter='b'/></filter>",
        "<filter name='a' chain='ipv4-a'><rule action='return' direction='out'>"
        "<ip srcipaddr='$A'/></rule><rule action='drop' direction='out'/></filter>",
        "<filter name='b' chain='ipv4-b'><rule action='return' direction='out'>"
        "<ip srcipaddr='$B'/></rule><rule action='drop' direction='out'/></filter>",
    )
    params = {"A": ("10.0.0.1",), "B": ("10.0.0.2",)}
    c = compile_port("p1", resolve(fs, "top", params))
    assert len(c.sets) == 2
    assert sorted(map(sorted, c.elements.values())) == [
        [("p1", "10.0.0.1")],
        [("p1", "10.0.0.2")],
    ]
    # The per-shape fast path takes its elements from the same slots.
    pc = PortCompiler(fs)
    pc.compile("p0", "top", params)
    assert pc.compile("p1", "top", params).elements == c.elements


def test_rule_with_comment_compiles() -> None:
    """A ``comment`` attribute (any protocol) crashed compile_port with a TypeError."""
    fs = filters(
        "<filter name='t'><rule action='drop' direction='out'>"
        "<tcp dstportstart='25' comment='no mail'/></rule>"
        "<rule action='drop' direction='out'><mac protocolid='ipv6' comment='no v6'/></rule>"
        "</filter>"
    )
    c = compile_port("p1", resolve(fs, "t", {}))
    assert set(c.dispatch) == {"l2o", "l4o", "l4i"}
    assert "no mail" not in str(c.chains)


def test_state_from_a_variable_is_a_compile_error() -> None:
    """``state='$S'`` crashed with a TypeError (a VarRef iterated as a state list)."""
    fs = filters(
        "<filter name='t'><rule action='accept' direction='out'><tcp state='$S'/></rule></filter>"
    )
    with pytest.raises(CompileError, match="'state' cannot come from a variable"):
        compile_port("p1", resolve(fs, "t", {"S": ("NEW",)}))


@pytest.mark.parametrize(
    ("direction", "action", "expected"),
    [
        ("out", "accept", {"l4o": f"{ICMP} accept"}),
        ("in", "accept", {"l4i": f"{ICMP} accept"}),
        ("in", "drop", {"l4i": f"{ICMP} drop"}),
    ],
)
def test_icmp_type_with_statematch_false_gets_only_the_primary_copy(
    direction: str, action: str, expected: dict[str, str]
) -> None:
    """libvirt's maySkipICMP does not depend on statematch; the mirrored copy (which let an
    echo request through the other way too) used to be installed with statematch='false'."""
    c = compile_xml(rule("<icmp type='8'/>", direction, action, " statematch='false'"))
    assert {role: rules(c, role)[0] for role in c.dispatch} == expected


@pytest.mark.parametrize(
    "proto", ["<icmp type='8'/>", "<icmp type='8' state='NEW'/>", "<icmpv6 type='128' code='0'/>"]
)
@pytest.mark.parametrize("statematch", ["", " statematch='false'"])
def test_icmp_type_inout_gets_no_l4_copy_as_in_libvirt(proto: str, statematch: str) -> None:
    """ebiptables-layout.md §4.3: icmp/icmpv6 with a type in direction inout has no copy at
    all (libvirt skips FI, FO and HI alike); it used to get a copy on each side."""
    c = compile_xml(rule(proto, "inout", "accept", statematch) + rule("<udp/>", "inout", "drop"))
    assert rules(c, "l4o") == ["ether.type==0x800 meta.l4proto==17 drop"]
    assert rules(c, "l4i") == ["ether.type==0x800 meta.l4proto==17 drop"]


@pytest.mark.parametrize("proto", ["<icmp code='3'/>", "<icmpv6 code='1'/>"])
def test_icmp_code_without_type_is_ignored_as_in_libvirt(proto: str) -> None:
    """libvirt only emits the code as ``--icmp-type TYPE/CODE``; a lone code used to narrow
    the rule to that code instead of matching every icmp packet."""
    c = compile_xml(rule(proto, "out", "drop"))
    assert all("code" not in text for role in c.dispatch for text in rules(c, role))
    assert set(c.dispatch) == {"l4o", "l4i"}  # no type: copied like any rule
