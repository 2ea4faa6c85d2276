"""The fixed part of nwguard's ruleset: tables, hooks, dispatch maps, conntrack marks.

``bridge nwguard`` holds the port filters; ``inet nwguard`` copies conntrack state into the
packet mark (see :mod:`marks`) and rejects what a bridge rule asked to reject.

Hook priorities: Ethernet-layer rules at -300 (ebtables' nat PREROUTING) and 300 (POSTROUTING),
the iptables layer after br_netfilter has run the IP hooks (prerouting > 0) or before it runs
them in forward (< -1) and on the host's own output.
"""

from __future__ import annotations

from nwguard.backends.nft import marks
from nwguard.ir.nodes import (
    And,
    Chain,
    Ct,
    MangleMark,
    Match,
    Meta,
    Object,
    Or,
    Reject,
    Rule,
    Set,
    Stmt,
    Table,
    Verdict,
    VMap,
)

BRIDGE = "bridge"
INET = "inet"
TABLE = "nwguard"

# role -> (base chain, hook, priority, key)
DISPATCH = {
    "l2o": ("pre_l2", "prerouting", -300, "iifname"),
    "l4o": ("pre_l4", "prerouting", 100, "iifname"),
    "l2i": ("post_l2", "postrouting", 300, "oifname"),
    "l4i": ("fwd_l4", "forward", -10, "oifname"),
}
HOST_OUT_L4 = ("out_l4", "output", -10)  # host → guest traffic sees l4i too


def tables() -> list[Table]:
    return [
        Table(BRIDGE, TABLE, "nwguard port filters (libvirt nwfilter semantics)"),
        Table(INET, TABLE, "nwguard: conntrack state for the bridge filters"),
    ]


def bridge_base() -> list[Object]:
    objs: list[Object] = []
    for role, (chain, hook, prio, key) in DISPATCH.items():
        objs.append(Set(BRIDGE, TABLE, role, ("ifname",), map_type="verdict"))
        objs.append(Chain(BRIDGE, TABLE, chain, "filter", hook, prio, "accept"))
        objs.append(Rule(BRIDGE, TABLE, chain, (VMap(Meta(key), role),)))
    name, hook, prio = HOST_OUT_L4
    objs.append(Chain(BRIDGE, TABLE, name, "filter", hook, prio, "accept"))
    objs.append(Rule(BRIDGE, TABLE, name, (VMap(Meta("oifname"), "l4i"),)))
    objs.append(Rule(BRIDGE, TABLE, name, (_reject_bit(), Verdict("drop"))))
    return objs


def _reject_bit() -> Stmt:
    return Match(And(Meta("mark"), marks.REJECT), 0, "!=")


def _state_rules(chain: str, kind_key: str, *guard: Stmt) -> list[Rule]:
    def r(*stmts: Stmt) -> Rule:
        return Rule(INET, TABLE, chain, (*guard, Match(Meta(kind_key), "bridge"), *stmts))

    def set_bits(bits: int) -> Stmt:
        return MangleMark(Or(Meta("mark"), bits))

    return [
        r(MangleMark(And(Meta("mark"), 0xFFFFFFFF & ~marks.MASK))),
        r(Match(Ct("state"), "new"), set_bits(marks.NEW)),
        r(Match(Ct("state"), "established"), set_bits(marks.ESTABLISHED)),
        r(Match(Ct("state"), "related"), set_bits(marks.RELATED)),
        r(Match(Ct("state"), "invalid"), set_bits(marks.INVALID)),
        r(Match(Ct("direction"), "reply"), set_bits(marks.REPLY)),
    ]


def inet_base() -> list[Object]:
    objs: list[Object] = [
        Chain(INET, TABLE, "ct_pre", "filter", "prerouting", -150, "accept"),
        Chain(INET, TABLE, "ct_out", "filter", "output", -150, "accept"),
        Chain(INET, TABLE, "ct_fwd", "filter", "forward", -150, "accept"),
        Chain(INET, TABLE, "rej_fwd", "filter", "forward", 0, "accept"),
        Chain(INET, TABLE, "rej_in", "filter", "input", 0, "accept"),
    ]
    objs += _state_rules("ct_pre", "iifkind")
    objs += _state_rules("ct_out", "oifkind")
    # Routed into a bridge (NAT/routed networks: replies from outside to a guest): the
    # bridge's output hook filters them towards the guest and needs their state too.
    objs += _state_rules("ct_fwd", "oifkind", Match(Meta("iifkind"), "bridge", "!="))
    for chain in ("rej_fwd", "rej_in"):
        objs.append(Rule(INET, TABLE, chain, (_reject_bit(), Reject())))
    return objs


# ----------------------------------------------------------------------------- counting
# Per-port counters (issue 12), kept apart from the dispatch so sharing is untouched: dynamic
# sets with a counter on each element. ``seen_out``: frames from each interface, before the
# Ethernet-layer rules; ``seen_in``: frames to each interface, before the IP-layer rules
# (bridge forward and output; every frame to a port crosses one of them). ``drops``: one
# element per (iifname, oifname, chain, rule) a drop or reject rule stopped. The rendering
# (sets, counting rules) is in ``render``; accepted = seen - dropped, per side. The counting
# of ``seen_*`` is the first rule of the dispatch base chain of its hook, not a base chain of
# its own: one hook traversal less per frame and side.
SEEN_OUT = "seen_out"
SEEN_IN = "seen_in"
DROPS = "drops"
DROPS_ANCHOR = "drops_decl"  # a chain never jumped to: its rule makes ``drops`` dynamic
COUNTER_SET_SIZE = 65535  # nft's default for dynamic sets; a full set only stops counting
# The counting rules also log to this nflog group: the kernel copies nothing while no one
# reads it (``nwguard drops --follow`` does). The prefix names the rule: "nwguard CHAIN INDEX".
NFLOG_GROUP = 20055
NFLOG_PREFIX = "nwguard"


def counting_chains() -> list[tuple[str, str, str]]:
    """(base chain, set, key): the dispatch chain of each first hook of a side, whose first
    rule counts the frame."""
    pre, _hook, _prio, key_o = DISPATCH["l2o"]
    fwd, _hook, _prio, key_i = DISPATCH["l4i"]
    return [(pre, SEEN_OUT, key_o), (fwd, SEEN_IN, key_i), (HOST_OUT_L4[0], SEEN_IN, key_i)]
