"""A port's resolved rules → shared chains plus per-port data, in the port IR (pure).

Every chain is named by a hash of its content, so ports whose filters compile to the same
rules share the same chains. What differs per port (variable values) goes into slot sets
keyed by the port's name (:class:`~nwguard.ir.ports.Lookup`), so the same rules serve every
port and a port only adds set elements and dispatch entries (:mod:`nwguard.ir.ports`).
"""

from __future__ import annotations

try:  # hashlib would also load OpenSSL (3 ms of every CLI start) for a hash built into CPython
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2s

import contextlib
import ipaddress
import json
from collections.abc import Iterator, Mapping
from typing import Any

from nwguard.compile.matches import Field, NotShareable, mirrored, rule_matches
from nwguard.errors import CompileError, ResolveError
from nwguard.ir.codec import encode
from nwguard.ir.nodes import CtState, Match, Payload, RawPayload, Stmt, Verdict
from nwguard.ir.ports import OUT_SIDE, ROLES, Contribution, FilterRule, KeyPart, Lookup, Origin
from nwguard.model import protocols as P
from nwguard.model.filter import AttrValue, Filter, Rule
from nwguard.model.protocols import Layer
from nwguard.model.values import BadValue, ValueType, VarRef, parse_value
from nwguard.records import ValueRecord
from nwguard.resolve.resolver import Pending, RuleInstance, flatten, instantiate

__all__ = ["ROLES", "Contribution", "PortCompiler", "compile_port"]

# ----------------------------------------------------------------------------- chain builder


class _ChainBuilder:
    """Collects one chain's rules with symbolic slot names, then names chain and sets."""

    def __init__(
        self, port: str, out_side: bool, instances: list[RuleInstance], place: str
    ) -> None:
        self.port, self.side = port, "out" if out_side else "in"
        self.place = place  # role and libvirt chain: where the chain sits in a port's tree
        self.instances = {id(i): n for n, i in enumerate(instances)}
        self.rules: list[FilterRule] = []
        self.slots: list[tuple[tuple[KeyPart, ...], SlotSpec]] = []
        self._pending: list[tuple[list[tuple[Field, VarRef]], bool]] = []

    def lookup(self, fields: list[tuple[Field, VarRef]], negated: bool) -> Stmt:
        slot = len(self.slots) + len(self._pending)
        self._pending.append((fields, negated))
        return Lookup(self.side, tuple(f.expr for f, _ in fields), f"%{slot}", negated)

    def add(
        self, rule: FilterRule, inst: RuleInstance | None = None, source: Rule | None = None
    ) -> None:
        """Append a rule; its pending lookups take their values from ``inst`` (typed by ``source``)."""
        for fields, _neg in self._pending:
            assert inst is not None and source is not None
            types: tuple[KeyPart, ...] = ("ifname", *(f.set_type or "" for f, _ in fields))
            self.slots.append((types, SlotSpec(self.instances[id(inst)], source, tuple(fields))))
        self._pending.clear()
        self.rules.append(rule)

    def drop_pending(self) -> None:
        self._pending.clear()

    def finish(self, contrib: Contribution, instances: list[RuleInstance]) -> str:
        # A chain with sets is also named by its place: two sub-chains of one port with equal
        # rules but different variables ($A in one, $B in the other) must not share sets.
        place = [self.place] if self.slots else []
        body = [[encode(r.matches), encode(r.verdict)] for r in self.rules]
        name = "c" + _digest([body, [encode(t) for t, _ in self.slots], *place])
        contrib.chains[name] = tuple(_named_slots(r, name) for r in self.rules)
        for i, (types, spec) in enumerate(self.slots):
            set_name = f"{name}_{i}"
            contrib.sets[set_name] = types
            contrib.slots[set_name] = spec
            contrib.elements.setdefault(set_name, []).extend(spec.elements(self.port, instances))
        return name


def _named_slots(rule: FilterRule, chain: str) -> FilterRule:
    """``rule`` with its symbolic slot references (``%0``) named after the chain's sets."""
    if not any(isinstance(m, Lookup) for m in rule.matches):
        return rule
    matches = tuple(
        m.replace(set=f"{chain}_{m.set[1:]}") if isinstance(m, Lookup) else m for m in rule.matches
    )
    named: FilterRule = rule.replace(matches=matches)
    return named


class SlotSpec(ValueRecord):
    """Where a set's per-port elements come from: which rule instance and which variables."""

    instance: int
    rule: Rule
    fields: tuple[tuple[Field, VarRef], ...]

    def elements(self, port: str, instances: list[RuleInstance]) -> list[tuple[Any, ...]]:
        with _located(port, instances[self.instance]):
            tuples = _project(instances[self.instance], self.rule, list(self.fields))
        raw = [isinstance(f.set_type, RawPayload) for f, _ in self.fields]
        if not any(raw):
            return [(port, *t) for t in tuples]
        return [
            (port, *(_raw_value(v) if r else v for v, r in zip(t, raw, strict=True)))
            for t in tuples
        ]


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


# (type, text) -> normalised text: a port's $MAC is in several sets
_TYPED: dict[tuple[str, str], str] = {}


def _substitute(inst: RuleInstance, combo: tuple[str, ...], rule: Rule) -> Rule:
    """``rule`` with every variable replaced by its value in ``combo`` (per-port fallback)."""
    values = dict(zip(inst.variables, combo, strict=True))
    proto = rule.proto
    assert proto is not None
    attrs: list[AttrValue] = []
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
    out: Rule = rule.replace(attrs=tuple(attrs))
    return out


# ----------------------------------------------------------------------------- copies


class Copy(ValueRecord):
    role: str
    rule: Rule  # mirrored already when needed
    state: tuple[Stmt, ...] = ()
    copy: str = ""  # "mirrored" for the opposite direction's copy


def ethernet_copies(rule: Rule) -> list[tuple[str, Rule]]:
    if rule.direction == "out":
        return [("l2o", rule)]
    if rule.direction == "in":
        return [("l2i", rule)]
    if rule.protocol == "stp" and rule.get("srcmacaddr"):
        raise CompileError(
            "STP filtering in inout direction with source MAC address set is not supported"
        )
    return [("l2o", mirrored(rule)), ("l2i", rule)]


def l4_copies(rule: Rule) -> list[Copy]:
    """The iptables-layer copies of libvirt (FI/HI → l4o, FO → l4i) and their state matches.

    With ``connlimit-above`` libvirt keeps only the copies as written (a limit counts the
    connections a guest opens, not replies) and drops their default state match.
    """
    copies = _l4_copies(rule)
    if rule.get("connlimit-above") is None:
        return copies
    keep_state = rule.statematch and rule.get("state") is not None
    return [c if keep_state else c.replace(state=()) for c in copies if not c.copy]


def _l4_copies(rule: Rule) -> list[Copy]:
    d, accept = rule.direction, rule.action == "accept"
    state = rule.get("state")
    if state is not None and isinstance(state.value, VarRef):
        # It decides which copies exist, so it cannot differ per port (libvirt ignores it).
        raise CompileError(f"{rule.protocol} attribute 'state' cannot come from a variable")
    out_primary = d == "out"
    explicit: tuple[Stmt, ...] | None = None  # the rule's own state match, when it counts
    if state is not None and rule.statematch:
        explicit = () if state.value == ("NONE",) else (CtState(state.value),)
    if rule.protocol in ("icmp", "icmpv6") and rule.get("type"):
        # libvirt skips every copy that could see the other direction (a reply has another
        # type), whatever statematch and state say: primary copies only, no direction match,
        # and for inout no copy at all (ebiptables-layout.md §4.3, maySkipICMP).
        if d == "inout":
            return []
        st = explicit
        if st is None:
            st = (CtState(("NEW", "ESTABLISHED")),) if accept and rule.statematch else ()
        return [Copy("l4o" if out_primary else "l4i", rule, st)]
    if explicit is not None:
        if d == "inout":
            return [Copy("l4o", mirrored(rule), explicit, "mirrored"), Copy("l4i", rule, explicit)]
        return [Copy("l4o" if out_primary else "l4i", rule, explicit)]
    if d == "inout":
        return [Copy("l4o", mirrored(rule), (), "mirrored"), Copy("l4i", rule)]
    primary, other = ("l4o", "l4i") if out_primary else ("l4i", "l4o")
    if accept and rule.statematch:
        return [
            Copy(primary, rule, (ORIGINAL_NEW_OR_ESTABLISHED,)),
            Copy(other, mirrored(rule), (REPLY_ESTABLISHED,), "mirrored"),
        ]
    return [Copy(primary, rule), Copy(other, mirrored(rule), (), "mirrored")]


# libvirt's "--ctstate NEW,ESTABLISHED --ctdir Original" and "--ctstate ESTABLISHED --ctdir Reply"
ORIGINAL_NEW_OR_ESTABLISHED = CtState(("NEW", "ESTABLISHED"), "original")
REPLY_ESTABLISHED = CtState(("ESTABLISHED",), "reply")


def _without_mirrored_mac(copy: Copy, original: Rule) -> Copy | None:
    """libvirt drops ``srcmacaddr`` from mirrored iptables copies (omits them if it was all)."""
    if copy.rule is original or copy.rule.get("dstmacaddr") is None:
        return copy
    attrs = tuple(a for a in copy.rule.attrs if a.name != "dstmacaddr")
    if not any(a.name not in ("comment", "state") for a in attrs):
        return None
    kept: Copy = copy.replace(rule=copy.rule.replace(attrs=attrs))
    return kept


def verdict(rule: Rule, l4: bool) -> Verdict:
    if rule.action == "reject" and not l4:
        return Verdict("drop")  # as libvirt: ebtables cannot reject
    return Verdict(rule.action)


# ----------------------------------------------------------------------------- a whole port


@contextlib.contextmanager
def _located(port: str, inst: RuleInstance) -> Iterator[None]:
    """An error compiling ``inst`` names the port, the filter (and its path) and the rule."""
    try:
        yield
    except (CompileError, ResolveError) as exc:
        if exc.message.startswith(f"port {port}: "):
            raise
        via = f" (via {' > '.join(inst.path)})" if len(inst.path) > 1 else ""
        where = f"port {port}: filter '{inst.filter}'{via} rule[{inst.index}]"
        raise type(exc)(f"{where}: {exc.message}") from None


def _ethernet_copies(port: str, inst: RuleInstance) -> list[tuple[str, Rule]]:
    with _located(port, inst):
        return ethernet_copies(inst.rule)


def compile_port(port: str, instances: list[RuleInstance]) -> Contribution:
    """Compile one port's ordered rule instances into its kernel contribution."""
    contrib = Contribution()
    for role in ("l2o", "l2i"):
        items = [
            (inst, r)
            for inst in instances
            if inst.rule.layer is Layer.ETHERNET
            for rl, r in _ethernet_copies(port, inst)
            if rl == role
        ]  # a mirrored copy is a new Rule object: _emit tells it by identity
        if items:
            contrib.dispatch[role] = _ethernet_side(port, role, items, contrib, instances)
    l4: dict[str, _ChainBuilder] = {}
    for inst in instances:
        if inst.rule.layer is Layer.ETHERNET:
            continue
        with _located(port, inst):
            copies = l4_copies(inst.rule)
        for copy in copies:
            kept = _without_mirrored_mac(copy, inst.rule)
            if kept is None:
                continue
            role = copy.role
            b = l4.setdefault(role, _ChainBuilder(port, OUT_SIDE[role], instances, role))
            _emit(b, inst, kept.rule, True, list(kept.state), contrib, kept.copy)
    for role, b in l4.items():
        contrib.dispatch[role] = b.finish(contrib, instances)
    return contrib


def _ethernet_side(
    port: str,
    role: str,
    items: list[tuple[RuleInstance, Rule]],
    contrib: Contribution,
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
    elif (ethertype := P.CHAIN_ETHERTYPE[prefix]) is not None:
        guard.append(Match(Payload("ether", "type"), ethertype))
    b.add(FilterRule(tuple(guard), Verdict("jump", names[chain]), label=chain))


def _origin(inst: RuleInstance, copy: str) -> Origin:
    return Origin(inst.filter, inst.path, inst.index, getattr(inst.rule, "line", None), copy)


def _emit(
    b: _ChainBuilder,
    inst: RuleInstance,
    rule: Rule,
    l4: bool,
    state: list[Stmt],
    contrib: Contribution,
    copy: str | None = None,
) -> None:
    with _located(b.port, inst):
        _emit_rule(b, inst, rule, l4, state, contrib, copy)


def _emit_rule(
    b: _ChainBuilder,
    inst: RuleInstance,
    rule: Rule,
    l4: bool,
    state: list[Stmt],
    contrib: Contribution,
    copy: str | None,
) -> None:
    if copy is None:
        copy = "" if rule is inst.rule else "mirrored"
    origin, final = _origin(inst, copy), verdict(rule, l4)
    negated_var = any(a.negated and isinstance(a.value, VarRef) for a in rule.attrs)
    if not (negated_var and len(inst.combos) > 1):
        try:
            stmts = rule_matches(rule, b)
        except NotShareable:
            b.drop_pending()
        else:
            b.add(FilterRule((*stmts, *state), final, origin), inst, rule)
            return
    contrib.fallback_rules += 1
    for combo in inst.combos:
        literal = _substitute(inst, combo, rule)
        b.add(FilterRule((*rule_matches(literal, b), *state), final, origin))


def _project(
    inst: RuleInstance, rule: Rule, fields: list[tuple[Field, VarRef]]
) -> list[tuple[str, ...]]:
    """The distinct typed value tuples of ``fields``' variables over the instance's combos."""
    pos = [inst.variables.index(ref) for _, ref in fields]
    types = [(_value_type(rule, ref), ref) for _, ref in fields]
    out: dict[tuple[str, ...], None] = {}
    for combo in inst.combos:
        out[
            tuple(_typed(w, t, ref, combo[p]) for ((w, t), ref), p in zip(types, pos, strict=True))
        ] = None
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
