"""The IR in libnftables JSON: the one place nwguard spells nftables (pure).

Ruleset batches (:class:`~nwguard.ir.nodes.Batch`: networks, the fixed layout) render
object by object. Port batches (:class:`~nwguard.ir.ports.PortBatch`) become objects of the
``bridge nwguard`` table: slot sets keyed by ``iifname``/``oifname``, chains, and elements
of the dispatch verdict maps; a reset first recreates both tables with their fixed layout
(:mod:`.layout`). Connection state and L4 reject go through packet-mark bits (:mod:`.marks`).

Sets keyed by raw header bits must be declared with ``typeof``, which libnftables 1.0.6
reads only in nft syntax: they are listed apart in :attr:`NftBatch.typeof_sets` for the
executor to create first.

>>> from nwguard.ir.nodes import Match, Payload
>>> stmt(Match(Payload("ip", "saddr"), "10.0.0.1", "!="))
[{'match': {'op': '!=', 'left': {'payload': {'protocol': 'ip', 'field': 'saddr'}}, 'right': '10.0.0.1'}}]
"""

from __future__ import annotations

from typing import Any

from nwguard.backends.nft import layout, marks
from nwguard.errors import CompileError
from nwguard.ir import nodes as ir
from nwguard.ir.ports import (
    ChainRules,
    DispatchEntries,
    FilterChain,
    FilterRule,
    IpLayer,
    KeyPart,
    Lookup,
    PortBatch,
    PortObject,
    SlotElements,
    SlotSet,
)
from nwguard.records import ValueRecord

B, T = layout.BRIDGE, layout.TABLE


class TypeofSet(ValueRecord):
    family: str
    table: str
    name: str
    typeof: str  # the key as nft expressions, e.g. ``iifname . @nh,64,48``


class NftBatch(ValueRecord):
    """A rendered batch: JSON commands, and the ``typeof`` sets to create before them."""

    commands: tuple[dict[str, Any], ...]
    typeof_sets: tuple[TypeofSet, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"nftables": list(self.commands)}

    def listed(self) -> dict[str, Any]:
        """Every object the batch adds, typeof sets included, as JSON commands: what the
        kernel lists afterwards (to compare with it, not to send)."""
        sets = [
            {"add": {"set": {"family": t.family, "table": t.table, "name": t.name}}}
            for t in self.typeof_sets
        ]
        return {"nftables": [*sets, *self.commands]}


def to_nft(batch: ir.Batch | PortBatch) -> NftBatch:
    """Render either kind of batch."""
    if isinstance(batch, PortBatch):
        return render_ports(batch)
    return NftBatch(tuple(command(c) for c in batch.commands))


# ----------------------------------------------------------------------------- expressions


def expr(v: ir.Value) -> Any:
    if not isinstance(v, ir.Expr):
        return v
    render = _EXPR.get(type(v))
    if render is None:
        raise TypeError(f"{type(v).__name__} is not an nftables expression")
    return render(v)


def _concat_key(k: Any) -> Any:
    return {"concat": [expr(i) for i in k]} if isinstance(k, tuple) else expr(k)


def _verdict_json(kind: str, target: str | None) -> Any:
    return {kind: {"target": target} if target else None}


_EXPR: dict[type, Any] = {
    ir.Payload: lambda e: {"payload": {"protocol": e.protocol, "field": e.field}},
    ir.RawPayload: lambda e: {"payload": {"base": e.base, "offset": e.offset, "len": e.length}},
    ir.Meta: lambda e: {"meta": {"key": e.key}},
    ir.Ct: lambda e: {"ct": {"key": e.key, **({"dir": e.dir} if e.dir else {})}},
    ir.TcpOption: lambda e: _tcp_option(e.kind),
    ir.Concat: lambda e: {"concat": [expr(i) for i in e.items]},
    ir.Prefix: lambda e: {"prefix": {"addr": e.addr, "len": e.length}},
    ir.Range: lambda e: {"range": [expr(e.low), expr(e.high)]},
    ir.SetRef: lambda e: "@" + e.name,
    ir.AnonSet: lambda e: {"set": [expr(i) for i in e.items]},
    ir.And: lambda e: {"&": [expr(e.left), expr(e.mask)]},
    ir.Or: lambda e: {"|": [expr(e.left), expr(e.bits)]},
    ir.VerdictValue: lambda e: _verdict_json(e.kind, e.target),
}

# nft 1.0.6 reads a raw tcp option ({"base", "offset", "len"}) in JSON as the bare option
# name, which never equals the kind: the rule matched nothing. By name, field "kind", it
# compares the kind byte as ``tcp option @N,0,8`` does.
_TCP_OPTION_NAMES = {0: "eol", 1: "nop", 2: "maxseg", 3: "window", 4: "sack-perm", 5: "sack",
                     8: "timestamp", 19: "md5sig", 30: "mptcp", 34: "fastopen"}  # fmt: skip


def _tcp_option(kind: int) -> dict[str, Any]:
    name = _TCP_OPTION_NAMES.get(kind)
    if name is None:
        return {"tcp option": {"base": kind, "offset": 0, "len": 8}}
    return {"tcp option": {"name": name, "field": "kind"}}


# ----------------------------------------------------------------------------- statements


def _match(left: Any, right: Any, op: str) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _masked_match(s: ir.Match) -> dict[str, Any]:
    m = s.right
    assert isinstance(m, ir.Masked)
    return _match({"&": [expr(s.left), expr(m.mask)]}, expr(m.value), s.op)


def _ct_state(s: ir.CtState) -> dict[str, Any]:
    """Connection state read from the mark bits ``inet nwguard`` copies from conntrack."""
    bits = [marks.STATE_BITS[st] for st in s.states]
    mask = sum(bits)
    if s.direction is None:
        return _match({"&": [{"meta": {"key": "mark"}}, mask]}, 0, "!=")
    reply = marks.REPLY if s.direction == "reply" else 0
    values = [b | reply for b in bits]
    right: Any = values[0] if len(values) == 1 else {"set": values}
    return _match({"&": [{"meta": {"key": "mark"}}, mask | marks.REPLY]}, right, "==")


def _lookup(s: Lookup) -> dict[str, Any]:
    port = {"meta": {"key": "iifname" if s.side == "out" else "oifname"}}
    return _match(
        {"concat": [port, *(expr(f) for f in s.fields)]}, "@" + s.set, "!=" if s.negated else "=="
    )


# what the IR can say and this backend cannot (the iptables backend can): refused by name
_REFUSED = {
    ir.IpSetMatch: "attribute 'ipset' is not supported by the nftables backend"
    " (nftables cannot read an ipset; use firewall_backend = iptables)",
    ir.ConnLimit: "attribute 'connlimit-above' is not supported by the nftables backend"
    " (ct count needs conntrack, which its bridge family lacks here)",
}


def stmt(s: ir.Stmt) -> list[Any]:
    """One IR statement as nftables JSON statements (a port-chain reject takes two)."""
    if type(s) in _REFUSED:
        raise CompileError(_REFUSED[type(s)])
    if isinstance(s, ir.Match) and isinstance(s.right, (ir.Payload, ir.RawPayload)):
        raise CompileError(
            "arp gratuitous='true' cannot be expressed in nftables (it compares two fields)"
        )
    if isinstance(s, ir.Match):
        if isinstance(s.right, ir.Masked):
            return [_masked_match(s)]
        return [_match(expr(s.left), expr(s.right), s.op)]
    if isinstance(s, Lookup):
        return [_lookup(s)]
    if isinstance(s, ir.CtState):
        return [_ct_state(s)]
    if isinstance(s, ir.Verdict):
        if s.kind == "reject":
            # the bridge family cannot send a reject here: mark it for inet nwguard's chains
            return [
                {
                    "mangle": {
                        "key": {"meta": {"key": "mark"}},
                        "value": expr(ir.Or(ir.Meta("mark"), marks.REJECT)),
                    }
                },
                {"accept": None},
            ]
        return [_verdict_json(s.kind, s.target)]
    if isinstance(s, ir.VMap):
        return [{"vmap": {"key": expr(s.key), "data": "@" + s.map_name}}]
    if isinstance(s, ir.MangleMark):
        return [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": expr(s.value)}}]
    if isinstance(s, ir.Counter):
        return [{"counter": None}]
    if isinstance(s, ir.Reject):
        if s.type is None:
            return [{"reject": None}]
        return [{"reject": {"type": s.type, **({"expr": s.expr} if s.expr else {})}}]
    if isinstance(s, ir.Masquerade):
        if s.port_low is None:
            return [{"masquerade": None}]
        return [{"masquerade": {"port": {"range": [s.port_low, s.port_high]}}}]
    if isinstance(s, ir.Snat):
        d: dict[str, Any] = {"addr": expr(s.addr), "family": s.family}
        if s.port is not None:
            d["port"] = expr(s.port)
        return [{"snat": d}]
    raise TypeError(f"{type(s).__name__} is not an nftables statement")


def rule_expr(rule: FilterRule) -> list[Any]:
    """A port rule's expression list: its matches, then its verdict."""
    out: list[Any] = []
    for s in (*rule.matches, rule.verdict):
        out += stmt(s)
    return out


# ----------------------------------------------------------------------------- objects


def obj(o: ir.Object) -> dict[str, Any]:
    if isinstance(o, ir.Table):
        t: dict[str, Any] = {"family": o.family, "name": o.name}
        if o.comment:
            t["comment"] = o.comment
        return {"table": t}
    if isinstance(o, ir.Chain):
        c: dict[str, Any] = {"family": o.family, "table": o.table, "name": o.name}
        if o.hook:
            c.update(type=o.type or "filter", hook=o.hook, prio=o.prio or 0)
            c["policy"] = o.policy or "accept"
        return {"chain": c}
    if isinstance(o, ir.Rule):
        r: dict[str, Any] = {"family": o.family, "table": o.table, "chain": o.chain}
        r["expr"] = [x for s in o.stmts for x in stmt(s)]
        if o.comment:
            r["comment"] = o.comment
        return {"rule": r}
    if isinstance(o, ir.Set):
        keys = [set_key_type(k) for k in o.key]
        d: dict[str, Any] = {
            "family": o.family, "table": o.table, "name": o.name,
            "type": keys if len(keys) > 1 else keys[0],
        }  # fmt: skip
        if o.map_type:
            d["map"] = o.map_type
        if o.flags:
            d["flags"] = list(o.flags)
        return {"map" if o.map_type else "set": d}
    if isinstance(o, ir.Elements):
        if o.values is None:
            elem = [_concat_key(k) for k in o.keys]
        else:
            elem = [[_concat_key(k), expr(v)] for k, v in zip(o.keys, o.values, strict=True)]
        return {"element": {"family": o.family, "table": o.table, "name": o.name, "elem": elem}}
    raise TypeError(f"{type(o).__name__} is not an nftables object")  # pragma: no cover


def command(c: ir.Command) -> dict[str, Any]:
    return {c.verb: obj(c.obj)}


# the nft expression whose type a set key part has, for ``typeof`` declarations
_TYPEOF_EXPR = {
    "ifname": "iifname",
    "ether_addr": "ether saddr",
    "ipv4_addr": "ip saddr",
    "ipv6_addr": "ip6 saddr",
    "inet_service": "th dport",
}


def set_key_type(part: KeyPart) -> str:
    """A key part as nft names it: a data type, or a raw load ``@nh,64,48``."""
    if isinstance(part, ir.RawPayload):
        return f"@{part.base},{part.offset},{part.length}"
    return part


def typeof(key: tuple[KeyPart, ...]) -> str | None:
    """The ``typeof`` declaration a key of raw loads needs (None: a plain typed key)."""
    if not any(isinstance(k, ir.RawPayload) for k in key):
        return None
    return " . ".join(
        set_key_type(k) if isinstance(k, ir.RawPayload) else _TYPEOF_EXPR[k] for k in key
    )


# ----------------------------------------------------------------------------- port batches


def port_object(o: PortObject) -> list[ir.Object]:
    """A port object as objects of ``bridge nwguard``."""
    if isinstance(o, SlotSet):
        return [ir.Set(B, T, o.name, o.key)]
    if isinstance(o, FilterChain):
        return [ir.Chain(B, T, o.name)]
    if isinstance(o, SlotElements):
        return [ir.Elements(B, T, o.set, o.keys)]
    if isinstance(o, DispatchEntries):
        return [ir.Elements(B, T, o.role, tuple(p for p, _ in o.entries),
                            tuple(ir.VerdictValue("goto", c) for _, c in o.entries))]  # fmt: skip
    raise TypeError(f"{type(o).__name__} is not a port object")  # pragma: no cover


def render_ports(batch: PortBatch) -> NftBatch:
    out: list[dict[str, Any]] = []
    typeof_sets: list[TypeofSet] = []
    if batch.reset:
        for table in layout.tables():  # both gone; the IP layer comes back with its IpLayer
            out.append(command(ir.Command("add", ir.Table(table.family, table.name))))
            out.append(command(ir.Command("delete", ir.Table(table.family, table.name))))
        out.append(command(ir.Command("add", layout.tables()[0])))
        out += counter_sets()
        out += [command(ir.Command("add", base)) for base in layout.bridge_base()]
        out += drops_declaration()
    for c in batch.commands:
        o = c.obj
        if isinstance(o, IpLayer):
            out += ip_layer(c.verb)
            continue
        if isinstance(o, ChainRules):
            out += [
                {c.verb: {"rule": {"family": B, "table": T, "chain": o.chain, "expr": e}}}
                for e in chain_rule_exprs(o.chain, o.rules)
            ]
            continue
        if c.verb == "add" and isinstance(o, SlotSet) and (decl := typeof(o.key)) is not None:
            typeof_sets.append(TypeofSet(B, T, o.name, decl))
            continue
        out += [command(ir.Command(c.verb, x)) for x in port_object(o)]
    return NftBatch(tuple(out), tuple(typeof_sets))


def ip_layer(verb: str) -> list[dict[str, Any]]:
    """Add or delete the IP-layer part of the layout, whether or not it is there: each
    object is added first (an existing one is kept), then made anew or deleted."""
    inet = next(t for t in layout.tables() if t.family == layout.INET)
    out = [command(ir.Command("add", ir.Table(inet.family, inet.name))),
           command(ir.Command("delete", ir.Table(inet.family, inet.name)))]  # fmt: skip
    bridge = layout.ip_layer_bridge()
    chains = [o for o in bridge if isinstance(o, ir.Chain)]
    out += [command(ir.Command("add", ch)) for ch in chains]
    if verb == "delete":
        return out + [command(ir.Command("delete", ir.Chain(B, T, ch.name))) for ch in chains]
    out += [command(ir.Command("flush", ir.Chain(B, T, ch.name))) for ch in chains]
    out += [command(ir.Command("add", o)) for o in bridge if not isinstance(o, ir.Chain)]
    out.append(command(ir.Command("add", inet)))
    return out + [command(ir.Command("add", o)) for o in layout.inet_base()]


# ----------------------------------------------------------------------------- counting
# Drop counters per port and rule without per-port rules (issue 12; layout's "counting").
# Before each drop or reject rule of a port chain comes a counting rule with the
# same matches and no verdict: ``log group G prefix "nwguard CHAIN INDEX"`` (the drop log,
# copied only while someone reads it) and ``update @drops { iifname . oifname . CID . INDEX }``. A
# failed update (a full set) ends only that rule, never the drop; the drop rule is unchanged.
# On the out side (bridge prerouting) oifname is empty, so the key tells the port's side even
# in a chain that ports use from both sides.

_IF_PAIR = [{"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}]
DROPS_KEY = ("ifname", "ifname", "ether_addr", "inet_service")


def rule_id(chain: str, index: int) -> tuple[str, int]:
    """A port rule's key part in ``drops``: its chain's 48-bit name as an Ethernet address
    (``c7ad5e81e4a25`` -> ``7a:d5:e8:1e:4a:25``) and its 0-based index in the chain."""
    digest = chain[1:]
    if not chain.startswith("c") or len(digest) != 12 or digest.strip("0123456789abcdef"):
        raise ValueError(f"{chain!r} is not a port chain name")
    return ":".join(digest[i : i + 2] for i in range(0, 12, 2)), index


def chain_of(chain_id: str) -> str:
    """The chain a ``drops`` key names (the inverse of :func:`rule_id`)."""
    return "c" + chain_id.replace(":", "")


def counts(rule: FilterRule) -> bool:
    """Whether ``rule`` stops packets: its drops are counted per port."""
    return rule.verdict.kind in ("drop", "reject")


def counting_rule(chain: str, index: int, rule: FilterRule) -> list[Any]:
    """The rule's matches, a log to the drop log's group, and the counter update (last: a
    full set ends the rule, and the log must not depend on it)."""
    cid, idx = rule_id(chain, index)
    log = {"log": {"prefix": log_prefix(chain, index), "group": layout.NFLOG_GROUP}}
    update = {"set": {"op": "update", "elem": {"concat": [*_IF_PAIR, cid, idx]},
                      "set": "@" + layout.DROPS}}  # fmt: skip
    return [x for s in rule.matches for x in stmt(s)] + [log, update]


def log_prefix(chain: str, index: int) -> str:
    return f"{layout.NFLOG_PREFIX} {chain} {index}"


def parse_log_prefix(prefix: str) -> tuple[str, int] | None:
    """(chain, index) of a counting rule's log prefix; None for another prefix."""
    parts = prefix.split()
    if len(parts) != 3 or parts[0] != layout.NFLOG_PREFIX or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def chain_rule_exprs(chain: str, rules: tuple[FilterRule, ...]) -> list[list[Any]]:
    """A port chain's rules as the kernel holds them: each of its rules, a drop or reject one
    preceded by its counting rule."""
    out: list[list[Any]] = []
    for i, r in enumerate(rules):
        if counts(r):
            out.append(counting_rule(chain, i, r))
        out.append(rule_expr(r))
    return out


def counting_base() -> list[dict[str, Any]]:
    """What the counters add to the fixed layout: the ``drops`` set and ``drops_decl``."""
    return [*counter_sets(), *drops_declaration()]


def counter_sets() -> list[dict[str, Any]]:
    return [{"add": {"set": {"family": B, "table": T, "name": layout.DROPS, "type": list(DROPS_KEY),
                             "size": layout.COUNTER_SET_SIZE, "stmt": [{"counter": None}]}}}]  # fmt: skip


def _update_rule(chain: str, elem: Any, set_name: str) -> dict[str, Any]:
    update = {"set": {"op": "update", "elem": elem, "set": "@" + set_name}}
    return {"add": {"rule": {"family": B, "table": T, "chain": chain, "expr": [update]}}}


def drops_declaration() -> list[dict[str, Any]]:
    """``drops_decl``, a chain nothing jumps to: libnftables 1.0.6 cannot declare a set
    ``dynamic`` in JSON; a set becomes dynamic when a rule of the same transaction updates it."""
    return [
        command(ir.Command("add", ir.Chain(B, T, layout.DROPS_ANCHOR))),
        _update_rule(
            layout.DROPS_ANCHOR, {"concat": [*_IF_PAIR, "00:00:00:00:00:00", 0]}, layout.DROPS
        ),
    ]


def nft_json(batch: ir.Batch | PortBatch) -> dict[str, Any]:
    """The batch's JSON commands (``{"nftables": [...]}``), without the typeof sets."""
    return to_nft(batch).to_json()
