"""A port's resolved rules → shared template chains plus per-port data (pure).

Every chain is named by a hash of its content, so ports whose filters compile to the same
rules share the same kernel chains. What differs per port (variable values) goes into sets
keyed by the port's name (``iifname . ip saddr @set``). The per-port contribution is plain
JSON-ready data: the chains and sets it needs, its set elements and its dispatch entries.

Kernel layout (bridge family; ``I``/``O`` are libvirt's guest-to-host / host-to-guest sides):

* ``l2o`` / ``l2i``: Ethernet-layer root chains (ebtables' ``libvirt-I-`` / ``libvirt-O-``),
  with sub-chains for non-root filter chains.
* ``l4o`` / ``l4i``: the iptables layer (``FI``+``HI`` / ``FO``), connection state read from
  the packet mark that ``inet nwguard`` sets from conntrack.
"""

from __future__ import annotations

try:  # hashlib would also load OpenSSL (3 ms of every CLI start) for a hash built into CPython
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2s

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nwguard.errors import CompileError, ResolveError
from nwguard.model import protocols as P
from nwguard.model.filter import AttrValue, Filter, Rule
from nwguard.model.protocols import Layer
from nwguard.model.values import BadValue, ValueType, VarRef, parse_value
from nwguard.records import ValueRecord
from nwguard.resolve.resolver import Pending, RuleInstance, flatten, instantiate
from nwguard.compile import marks
from nwguard.ir.nodes import Comment, Concat, MangleMark, Match, Meta, Or, Payload, SetRef, Stmt, Verdict
from nwguard.compile.matches import Field, NotShareable, SlotSink, fix_masked, is_raw_key, mirrored, rule_matches

ROLES = ("l2o", "l2i", "l4o", "l4i")
OUT_SIDE = {"l2o": True, "l2i": False, "l4o": True, "l4i": False}


@dataclass
class Contribution:
    """What one port needs in the kernel. JSON-ready; chains/sets may be shared with others."""

    chains: dict[str, list[Any]] = field(default_factory=dict)  # name -> rules (expr json lists)
    sets: dict[str, list[str]] = field(default_factory=dict)  # name -> key types
    elements: dict[str, list[list[str]]] = field(default_factory=dict)  # set -> keys
    dispatch: dict[str, str] = field(default_factory=dict)  # role -> chain
    fallback_rules: int = 0  # rules expanded per port because they could not be shared
    slots: dict[str, SlotSpec] = field(default_factory=dict)  # compile-time only, not saved

    def to_json(self) -> dict[str, Any]:
        return {
            "chains": sorted(self.chains), "sets": sorted(self.sets), "elements": self.elements,
            "dispatch": self.dispatch, "fallback_rules": self.fallback_rules,
        }


# ----------------------------------------------------------------------------- chain builder


class _ChainBuilder(SlotSink):
    """Collects one chain's rules with symbolic slot names, then names chain and sets."""

    def __init__(
        self, port: str, out_side: bool, instances: list[RuleInstance], place: str
    ) -> None:
        self.port, self.key = port, Meta("iifname" if out_side else "oifname")
        self.place = place  # role and libvirt chain: where the chain sits in a port's tree
        self.instances = {id(i): n for n, i in enumerate(instances)}
        self.rules: list[list[Stmt]] = []
        self.slots: list[tuple[list[str], SlotSpec]] = []
        self._pending: list[tuple[list[tuple[Field, VarRef]], bool]] = []

    def lookup(self, fields: list[tuple[Field, VarRef]], negated: bool) -> Stmt:
        slot = len(self.slots) + len(self._pending)
        self._pending.append((fields, negated))
        exprs = (self.key, *(f.expr for f, _ in fields))
        return Match(Concat(exprs), SetRef(f"%{slot}"), "!=" if negated else "==")

    def add(self, stmts: list[Stmt], inst: RuleInstance | None = None, rule: Rule | None = None) -> None:
        """Append a rule; its pending lookups take their values from ``inst`` (typed by ``rule``)."""
        for fields, _neg in self._pending:
            types = ["ifname", *(f.set_type or "" for f, _ in fields)]
            assert inst is not None and rule is not None
            self.slots.append((types, SlotSpec(self.instances[id(inst)], rule, tuple(fields))))
        self._pending.clear()
        self.rules.append(fix_masked(stmts))

    def drop_pending(self) -> None:
        self._pending.clear()

    def finish(self, contrib: Contribution, instances: list[RuleInstance]) -> str:
        # A rule's comment stays in the filter XML: chains store expressions only (and
        # ebtables ignored comments too); Comment.to_json() refuses on purpose.
        body = [[s.to_json() for s in rule if not isinstance(s, Comment)] for rule in self.rules]
        # A chain with sets is also named by its place: two sub-chains of one port with equal
        # rules but different variables ($A in one, $B in the other) must not share sets.
        place = [self.place] if self.slots else []
        name = "c" + _digest([body, [t for t, _ in self.slots], *place])
        renamed = json.loads(
            json.dumps(body).replace('"@%', f'"@{name}_')
        )  # symbolic slots → real set names
        contrib.chains[name] = renamed
        for i, (types, spec) in enumerate(self.slots):
            set_name = f"{name}_{i}"
            contrib.sets[set_name] = types
            contrib.slots[set_name] = spec
            contrib.elements.setdefault(set_name, []).extend(spec.elements(self.port, instances))
        return name


class SlotSpec(ValueRecord):
    """Where a set's per-port elements come from: which rule instance and which variables."""

    instance: int
    rule: Rule
    fields: tuple[tuple[Field, VarRef], ...]

    def elements(self, port: str, instances: list[RuleInstance]) -> list[list[Any]]:
        tuples = _project(instances[self.instance], self.rule, list(self.fields))
        raw = [is_raw_key(f.set_type) for f, _ in self.fields]
        if not any(raw):
            return [[port, *t] for t in tuples]
        return [[port, *(_raw_value(v) if r else v for v, r in zip(t, raw, strict=True))] for t in tuples]


def _raw_value(text: str) -> int:
    """A typed value as the integer a raw load compares with (MAC, IPv4 or number)."""
    if ":" in text:
        return int(text.replace(":", ""), 16)
    if "." in text:
        return int(ipaddress.IPv4Address(text))
    return int(text)


def _digest(data: Any) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return blake2s(raw, digest_size=6).hexdigest()


# ----------------------------------------------------------------------------- values


def _value_type(rule: Rule, ref: VarRef) -> tuple[str, ValueType]:
    """The attribute (name and type) that uses ``ref`` in ``rule``."""
    proto = rule.proto
    assert proto is not None
    for a in rule.attrs:
        if a.value == ref:
            attr = proto.attr(a.name)
            assert attr is not None
            return f"{proto.name} {a.name}", attr.type
    raise AssertionError(ref)  # pragma: no cover


def _typed(where: str, vtype: ValueType, ref: VarRef, raw: str) -> str:
    """A variable's value checked and normalised by the type of the attribute using it."""
    key = (vtype.name, raw)
    value = _TYPED.get(key)
    if value is None:
        try:
            parsed = vtype.parse(raw)
        except BadValue as exc:
            raise ResolveError(
                f"variable {ref.name} value '{raw}' is not valid for {where}: expected {exc.allowed}"
            ) from None
        value = str(parsed.value) if hasattr(parsed, "value") else str(parsed)
        if len(_TYPED) > 100_000:  # a long-running daemon: keep the memo bounded
            _TYPED.clear()
        _TYPED[key] = value
    return value


_TYPED: dict[tuple[str, str], str] = {}  # (type, text) -> normalised text: a port's $MAC is in several sets


def _substitute(inst: RuleInstance, combo: tuple[str, ...], rule: Rule) -> Rule:
    """``rule`` with every variable replaced by its value in ``combo`` (per-port fallback)."""
    values = dict(zip(inst.variables, combo, strict=True))
    proto = rule.proto
    assert proto is not None
    attrs = []
    for a in rule.attrs:
        if isinstance(a.value, VarRef):
            attr = proto.attr(a.name)
            assert attr is not None
            try:
                a = AttrValue(a.name, parse_value(attr.type, values[a.value]), a.negated)
            except BadValue as exc:
                raise ResolveError(
                    f"variable {a.value.name} value '{values[a.value]}' is not valid for "
                    f"{proto.name} {a.name}: expected {exc.allowed}"
                ) from None
        attrs.append(a)
    return Rule(rule.action, rule.direction, rule.priority, rule.statematch, rule.protocol, tuple(attrs))


# ----------------------------------------------------------------------------- copies


class Copy(ValueRecord):
    role: str
    rule: Rule  # mirrored already when needed
    state: tuple[Stmt, ...] = ()


def ethernet_copies(rule: Rule) -> list[tuple[str, Rule]]:
    if rule.direction == "out":
        return [("l2o", rule)]
    if rule.direction == "in":
        return [("l2i", rule)]
    if rule.protocol == "stp" and rule.get("srcmacaddr"):
        raise CompileError("STP filtering in inout direction with source MAC address set is not supported")
    return [("l2o", mirrored(rule)), ("l2i", rule)]


def l4_copies(rule: Rule) -> list[Copy]:
    """The iptables-layer copies of libvirt (FI/HI → l4o, FO → l4i) and their state matches."""
    d, accept = rule.direction, rule.action == "accept"
    state = rule.get("state")
    if state is not None and isinstance(state.value, VarRef):
        # It decides which copies exist, so it cannot differ per port (libvirt ignores it).
        raise CompileError(f"{rule.protocol} attribute 'state' cannot come from a variable")
    out_primary = d == "out"
    explicit: tuple[Stmt, ...] | None = None  # the rule's own state match, when it counts
    if state is not None and rule.statematch:
        explicit = () if state.value == ("NONE",) else (marks.state_match(state.value),)
    if rule.protocol in ("icmp", "icmpv6") and rule.get("type"):
        # libvirt skips every copy that could see the other direction (a reply has another
        # type), whatever statematch and state say: primary copies only, no direction match,
        # and for inout no copy at all (ebiptables-layout.md §4.3, maySkipICMP).
        if d == "inout":
            return []
        st = explicit
        if st is None:
            st = (marks.state_match(("NEW", "ESTABLISHED")),) if accept and rule.statematch else ()
        return [Copy("l4o" if out_primary else "l4i", rule, st)]
    if explicit is not None:
        if d == "inout":
            return [Copy("l4o", mirrored(rule), explicit), Copy("l4i", rule, explicit)]
        return [Copy("l4o" if out_primary else "l4i", rule, explicit)]
    if d == "inout":
        return [Copy("l4o", mirrored(rule)), Copy("l4i", rule)]
    primary, other = ("l4o", "l4i") if out_primary else ("l4i", "l4o")
    if accept and rule.statematch:
        return [
            Copy(primary, rule, (marks.ORIGINAL_NEW_OR_ESTABLISHED,)),
            Copy(other, mirrored(rule), (marks.REPLY_ESTABLISHED,)),
        ]
    return [Copy(primary, rule), Copy(other, mirrored(rule))]


def _without_mirrored_mac(copy: Copy, original: Rule) -> Copy | None:
    """libvirt drops ``srcmacaddr`` from mirrored iptables copies (omits them if it was all)."""
    if copy.rule is original or copy.rule.get("dstmacaddr") is None:
        return copy
    attrs = tuple(a for a in copy.rule.attrs if a.name != "dstmacaddr")
    if not any(a.name not in ("comment", "state") for a in attrs):
        return None
    r = copy.rule
    return Copy(copy.role, Rule(r.action, r.direction, r.priority, r.statematch, r.protocol, attrs), copy.state)


def verdict(rule: Rule, l4: bool) -> list[Stmt]:
    if rule.action == "reject":
        if not l4:
            return [Verdict("drop")]  # as libvirt: ebtables cannot reject
        return [MangleMark(Or(Meta("mark"), marks.REJECT)), Verdict("accept")]
    return [Verdict(rule.action)]


def comment(rule: Rule) -> list[Stmt]:
    from nwguard.ir.nodes import Comment

    c = rule.get("comment")
    return [Comment(c.value)] if c is not None and not isinstance(c.value, VarRef) else []


# ----------------------------------------------------------------------------- a whole port


def compile_port(port: str, instances: list[RuleInstance]) -> Contribution:
    """Compile one port's ordered rule instances into its kernel contribution."""
    contrib = Contribution()
    for role in ("l2o", "l2i"):
        items = [
            (inst, r)
            for inst in instances
            if inst.rule.layer is Layer.ETHERNET
            for rl, r in ethernet_copies(inst.rule)
            if rl == role
        ]
        if items:
            contrib.dispatch[role] = _ethernet_side(port, role, items, contrib, instances)
    l4: dict[str, _ChainBuilder] = {}
    for inst in instances:
        if inst.rule.layer is Layer.ETHERNET:
            continue
        for copy in l4_copies(inst.rule):
            kept = _without_mirrored_mac(copy, inst.rule)
            if kept is None:
                continue
            role = copy.role
            b = l4.setdefault(role, _ChainBuilder(port, OUT_SIDE[role], instances, role))
            _emit(b, inst, kept.rule, True, list(kept.state), contrib)
    for role, b in l4.items():
        contrib.dispatch[role] = b.finish(contrib, instances)
    return contrib


def _ethernet_side(
    port: str, role: str, items: list[tuple[RuleInstance, Rule]], contrib: Contribution,
    instances: list[RuleInstance],
) -> str:
    subs: dict[str, list[tuple[RuleInstance, Rule]]] = {}
    sub_prio: dict[str, int] = {}
    root_items = []
    for inst, r in items:
        if inst.chain == "root":
            root_items.append((inst, r))
        else:
            subs.setdefault(inst.chain, []).append((inst, r))
            sub_prio[inst.chain] = inst.chain_priority
    sub_names = {}
    for chain, chain_items in subs.items():
        b = _ChainBuilder(port, OUT_SIDE[role], instances, f"{role}/{chain}")
        for inst, r in chain_items:
            _emit(b, inst, r, False, [], contrib)
        sub_names[chain] = b.finish(contrib, instances)
    pending = sorted(subs, key=lambda c: sub_prio[c])  # stable: first appearance on ties
    root = _ChainBuilder(port, OUT_SIDE[role], instances, f"{role}/root")
    for inst, r in root_items:
        while pending and sub_prio[pending[0]] <= inst.priority:
            _jump(root, pending.pop(0), sub_names)
        _emit(root, inst, r, False, [], contrib)
    for chain in pending:
        _jump(root, chain, sub_names)
    return root.finish(contrib, instances)


def _jump(b: _ChainBuilder, chain: str, names: dict[str, str]) -> None:
    prefix = P.chain_prefix(chain)
    guard: list[Stmt] = []
    if prefix == "stp":
        guard.append(Match(Payload("ether", "daddr"), P.STP_GROUP_MAC))
    elif P.CHAIN_ETHERTYPE[prefix] is not None:
        guard.append(Match(Payload("ether", "type"), P.CHAIN_ETHERTYPE[prefix]))
    b.add([*guard, Verdict("jump", names[chain])])


def _emit(b: _ChainBuilder, inst: RuleInstance, rule: Rule, l4: bool, state: list[Stmt], contrib: Contribution) -> None:
    tail = [*state, *comment(rule), *verdict(rule, l4)]
    negated_var = any(a.negated and isinstance(a.value, VarRef) for a in rule.attrs)
    if not (negated_var and len(inst.combos) > 1):
        try:
            stmts = rule_matches(rule, b)
        except NotShareable:
            b.drop_pending()
        else:
            b.add([*stmts, *tail], inst, rule)
            return
    contrib.fallback_rules += 1
    for combo in inst.combos:
        literal = _substitute(inst, combo, rule)
        b.add([*rule_matches(literal, b), *tail])


def _project(inst: RuleInstance, rule: Rule, fields: list[tuple[Field, VarRef]]) -> list[tuple[str, ...]]:
    """The distinct typed value tuples of ``fields``' variables over the instance's combos."""
    pos = [inst.variables.index(ref) for _, ref in fields]
    types = [(_value_type(rule, ref), ref) for _, ref in fields]
    out: dict[tuple[str, ...], None] = {}
    for combo in inst.combos:
        out[tuple(_typed(w, t, ref, combo[p]) for ((w, t), ref), p in zip(types, pos, strict=True))] = None
    return list(out)


class PortCompiler:
    """Compiles many ports against one filter map fast.

    The DAG below a top filter is flattened once; the chains are compiled once per *shape*
    (top filter and the number of value combinations of each rule). A further port of the
    same shape only computes its set elements. Ports whose rules had to be expanded per port
    (``fallback_rules``) are compiled in full every time.
    """

    def __init__(self, filters: Mapping[str, Filter]) -> None:
        self.filters = filters
        self._flat: dict[str, list[Pending]] = {}
        self._templates: dict[tuple[Any, ...], Contribution] = {}

    def compile(self, port: str, top: str, params: Mapping[str, tuple[str, ...]]) -> Contribution:
        pending = self._flat.get(top)
        if pending is None:
            pending = self._flat[top] = flatten(self.filters, top)
        instances = instantiate(pending, params)
        key = (top, tuple(len(i.combos) for i in instances))
        tpl = self._templates.get(key)
        if tpl is None:
            contrib = compile_port(port, instances)
            if not contrib.fallback_rules:
                self._templates[key] = contrib
            return contrib
        elements = {s: spec.elements(port, instances) for s, spec in tpl.slots.items()}
        return Contribution(tpl.chains, tpl.sets, elements, dict(tpl.dispatch), 0, tpl.slots)
