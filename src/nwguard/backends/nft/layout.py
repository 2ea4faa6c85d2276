"""The fixed part of nwguard's ruleset: tables, hooks, dispatch maps, conntrack marks.

``bridge nwguard`` holds the port filters; ``inet nwguard`` copies conntrack state into the
packet mark (see :mod:`marks`) and rejects what a bridge rule asked to reject. The IP-layer
part (``inet nwguard`` and the bridge's IP-layer base chains) exists only while some port
needs it (:class:`~nwguard.ir.ports.IpLayer`).

Hook priorities: Ethernet-layer rules at -300 (ebtables' nat PREROUTING) and 300 (POSTROUTING),
the iptables layer after br_netfilter has run the IP hooks (prerouting > 0) or before it runs
them in forward (< -1) and on the host's own output.
"""

from __future__ import annotations

from nwguard.backends.nft import marks
from nwguard.ir.nodes import (
    And,
    Chain,
    Concat,
    Ct,
    Elements,
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
    VerdictValue,
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
    """The Ethernet-layer dispatch, always there: the four dispatch maps, and the base chains
    of ``l2o``/``l2i``. Nothing of the IP layer: a bridged frame of an Ethernet-layer-only
    port crosses two base chains of nwguard's and no IP hook."""
    objs: list[Object] = [
        Set(BRIDGE, TABLE, role, ("ifname",), map_type="verdict") for role in DISPATCH
    ]
    for role in ("l2o", "l2i"):
        objs += _dispatch_chain(role)
    return objs


def _dispatch_chain(role: str) -> list[Object]:
    chain, hook, prio, key = DISPATCH[role]
    return [
        Chain(BRIDGE, TABLE, chain, "filter", hook, prio, "accept"),
        Rule(BRIDGE, TABLE, chain, (VMap(Meta(key), role),)),
    ]


def ip_layer_bridge() -> list[Object]:
    """The IP-layer dispatch in ``bridge nwguard`` (:class:`~nwguard.ir.ports.IpLayer`): the
    base chains of ``l4o``/``l4i`` and of the host's own output, which drops what a rule
    marked for reject (the host's frames cross no reject chain)."""
    objs = _dispatch_chain("l4o") + _dispatch_chain("l4i")
    name, hook, prio = HOST_OUT_L4
    objs.append(Chain(BRIDGE, TABLE, name, "filter", hook, prio, "accept"))
    objs.append(Rule(BRIDGE, TABLE, name, (VMap(Meta("oifname"), "l4i"),)))
    objs.append(Rule(BRIDGE, TABLE, name, (_reject_bit(), Verdict("drop"))))
    return objs


def ip_layer_chains() -> list[str]:
    """The names of :func:`ip_layer_bridge`'s base chains."""
    return [o.name for o in ip_layer_bridge() if isinstance(o, Chain)]


def _reject_bit() -> Stmt:
    return Match(And(Meta("mark"), marks.REJECT), 0, "!=")


_DIRECTIONS = {"original": 0, "reply": marks.REPLY}
STATE_MARKS = "ct_marks"  # (ct state . ct direction) -> goto the chain that sets those bits
INVALID_MARK = "ct_invalid"  # an invalid packet has no connection, so no direction either
_KEEP = 0xFFFFFFFF & ~marks.MASK  # the mark's bits that are not nwguard's


def _mark_chain(state: str, direction: str) -> str:
    return f"ct_{state}_{direction}"


def _set_bits(name: str, bits: int) -> list[Object]:
    return [
        Chain(INET, TABLE, name),
        Rule(INET, TABLE, name, (MangleMark(Or(And(Meta("mark"), _KEEP), bits)),)),
    ]


def _state_marks() -> list[Object]:
    """The state map and its chains: one lookup per packet instead of a rule per state bit
    (the states are exclusive). Each chain sets all of nwguard's bits in one mangle."""
    objs: list[Object] = [Set(INET, TABLE, STATE_MARKS, ("ct_state", "ct_dir"), map_type="verdict")]
    keys, targets = [], []
    for state, bits in marks.STATE_BITS.items():
        if state == "INVALID":
            continue
        for direction, reply in _DIRECTIONS.items():
            name = _mark_chain(state.lower(), direction)
            objs += _set_bits(name, bits | reply)
            keys.append((state.lower(), direction))
            targets.append(VerdictValue("goto", name))
    objs.append(Elements(INET, TABLE, STATE_MARKS, tuple(keys), tuple(targets)))
    return objs + _set_bits(INVALID_MARK, marks.INVALID)


def _state_rules(chain: str, kind_key: str, *guard: Stmt) -> list[Rule]:
    """Copy the packet's connection state into its mark: a tracked packet's state and
    direction by one lookup, an invalid one's (no connection, no direction: the lookup's key
    cannot be read) by the next rule; with no state (untracked), clear nwguard's bits."""
    bridge = Match(Meta(kind_key), "bridge")
    key = Concat((Ct("state"), Ct("direction")))
    return [
        Rule(INET, TABLE, chain, (*guard, bridge, VMap(key, STATE_MARKS))),
        Rule(
            INET,
            TABLE,
            chain,
            (*guard, bridge, Match(Ct("state"), "invalid"), Verdict("goto", INVALID_MARK)),
        ),
        Rule(INET, TABLE, chain, (*guard, bridge, MangleMark(And(Meta("mark"), _KEEP)))),
    ]


def inet_base() -> list[Object]:
    objs: list[Object] = _state_marks() + [
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
# Per-port counters (issue 12). What each port sent and received is its interface's own
# statistics (the host reads them; no rule counts a frame that passes). ``drops``: a dynamic
# set with a counter on each element, one per (iifname, oifname, chain, rule) a drop or
# reject rule stopped; the rendering (the set, the counting rules) is in ``render``.
DROPS = "drops"
DROPS_ANCHOR = "drops_decl"  # a chain never jumped to: its rule makes ``drops`` dynamic
COUNTER_SET_SIZE = 65535  # nft's default for dynamic sets; a full set only stops counting
# The counting rules also log to this nflog group: the kernel copies nothing while no one
# reads it (``nwguard drops --follow`` does). The prefix names the rule: "nwguard CHAIN INDEX".
NFLOG_GROUP = 20055
NFLOG_PREFIX = "nwguard"
