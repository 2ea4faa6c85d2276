"""Walk one packet through a port's compiled rules as the kernel does (pure).

The order is the kernel's hook order: a frame *from* the guest meets the port's Ethernet
layer (``l2o``, bridge prerouting -300) then its IP layer (``l4o``, prerouting 100); a frame
*to* the guest its IP layer (``l4i``, bridge forward or output -10) then its Ethernet layer
(``l2i``, postrouting 300). Each role's dispatch entry is a ``goto`` to the port's root chain;
``accept`` (or the end of the root chain, or ``return`` from it) ends that role and the packet
goes on to the next; ``drop`` ends everything; ``reject`` (IP layer only: the compiler makes an
Ethernet-layer reject a drop) is the nftables backend's mark-and-accept that ``inet nwguard``
turns into a reject before the packet goes anywhere, so it is final too.

Loads follow nft: a field the packet does not have makes the rule not match, whatever its
operator (nft *breaks*); protocol fields carry nft's implicit dependency (``ip saddr`` needs
``ether type ip``, ``tcp dport`` needs ``meta l4proto tcp``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from nwguard.errors import NwguardError
from nwguard.explain.packet import ETH_ARP, ETH_IP, ETH_IP6, ETH_VLAN, Packet, tcp_option_present
from nwguard.ir import nodes as ir
from nwguard.ir.ports import Contribution, FilterRule, Lookup, Origin
from nwguard.model.values import IP_PROTOCOL_NAMES
from nwguard.records import ValueRecord

ORDER = {"out": ("l2o", "l4o"), "in": ("l4i", "l2i")}
STATES = ("new", "established", "related", "invalid")

# (protocol, field) -> (base, bit offset, bit length), as nft defines them
_FIELDS: dict[tuple[str, str], tuple[str, int, int]] = {
    ("ether", "daddr"): ("ll", 0, 48),
    ("ether", "saddr"): ("ll", 48, 48),
    ("ether", "type"): ("ll", 96, 16),
    ("vlan", "id"): ("ll", 116, 12),
    ("vlan", "type"): ("ll", 128, 16),
    ("arp", "htype"): ("nh", 0, 16),
    ("arp", "ptype"): ("nh", 16, 16),
    ("arp", "operation"): ("nh", 48, 16),
    ("arp", "saddr ether"): ("nh", 64, 48),
    ("arp", "saddr ip"): ("nh", 112, 32),
    ("arp", "daddr ether"): ("nh", 144, 48),
    ("arp", "daddr ip"): ("nh", 192, 32),
    ("ip", "dscp"): ("nh", 8, 6),
    ("ip", "saddr"): ("nh", 96, 32),
    ("ip", "daddr"): ("nh", 128, 32),
    ("ip6", "dscp"): ("nh", 4, 6),
    ("ip6", "saddr"): ("nh", 64, 128),
    ("ip6", "daddr"): ("nh", 192, 128),
    **{(p, "sport"): ("th", 0, 16) for p in ("th", "tcp", "udp", "sctp", "udplite")},
    **{(p, "dport"): ("th", 16, 16) for p in ("th", "tcp", "udp", "sctp", "udplite")},
    ("tcp", "flags"): ("th", 104, 8),
    **{(p, "type"): ("th", 0, 8) for p in ("icmp", "icmpv6")},
    **{(p, "code"): ("th", 8, 8) for p in ("icmp", "icmpv6")},
}
# nft's implicit dependency of a protocol's fields: an ethertype or an IP protocol
_NEEDS_ETHERTYPE = {"arp": ETH_ARP, "ip": ETH_IP, "ip6": ETH_IP6, "vlan": ETH_VLAN}
_NEEDS_L4PROTO = {
    p: IP_PROTOCOL_NAMES[p] for p in ("tcp", "udp", "sctp", "udplite", "icmp", "icmpv6")
}
# key types of slot sets, as the width of their values in bits
_KEY_BITS = {"ether_addr": 48, "ipv4_addr": 32, "ipv6_addr": 128, "inet_service": 16}


class ExplainError(NwguardError):
    code = "explain"


class Conntrack(ValueRecord):
    """The connection state the IP layer sees: ``state`` one of :data:`STATES` or None (the
    packet has no conntrack entry: not IP), ``reply`` the reply direction."""

    state: str | None
    reply: bool = False
    assumed: bool = False  # guessed from the lone packet, not given

    def describe(self) -> str:
        if self.state is None:
            return "none (not tracked)"
        how = " (assumed: a lone packet)" if self.assumed else ""
        return f"{self.state}, {'reply' if self.reply else 'original'} direction{how}"


def lone_packet_state(p: Packet) -> Conntrack:
    """The state conntrack gives a packet that starts no known connection."""
    if p.ethertype not in (ETH_IP, ETH_IP6) or p.l4proto is None:
        return Conntrack(None, assumed=True)
    first = p.load("th", 0, 8)
    if p.l4proto == IP_PROTOCOL_NAMES["tcp"]:
        flags = p.load("th", 104, 8)
        if flags is not None and flags & 0x12 == 0x12:  # SYN+ACK without a SYN: invalid
            return Conntrack("invalid", assumed=True)
        if flags is not None and flags & 0x04:  # RST opens nothing
            return Conntrack("invalid", assumed=True)
    if p.l4proto == IP_PROTOCOL_NAMES["icmp"] and first not in (8, 13, 15, 17):
        return Conntrack("invalid", assumed=True)  # only requests start an icmp "connection"
    if p.l4proto == IP_PROTOCOL_NAMES["icmpv6"] and first is not None and first < 128:
        return Conntrack("invalid", assumed=True)  # errors relate to nothing known
    return Conntrack("new", assumed=True)


class Check(ValueRecord):
    """One statement of a rule, as the packet met it: what was read, whether it held."""

    what: str
    held: bool | None  # None: not reached (an earlier statement failed)
    value: str | None = None  # what the packet had, when the kernel could read it


class Step(ValueRecord):
    """A rule the packet met: where it is (role, chain, position), where it comes from, the
    checks and variables, whether it matched, and its verdict."""

    role: str
    chain: str
    position: int  # 1-based among the chain's filter rules (not the counting rules)
    origin: Origin | None
    verdict: str  # the rule's verdict: accept, drop, reject, return, continue, jump X, goto X
    matched: bool
    checks: tuple[Check, ...]
    variables: tuple[tuple[str, tuple[str, ...]], ...] = ()  # name -> the port's values used
    note: str = ""  # for rules nwguard adds (jumps into a sub-chain)


class RoleResult(ValueRecord):
    role: str
    chain: str | None  # the port's root chain for this role; None: the role does not filter
    outcome: str  # accept (went on), drop, reject, or "unfiltered"


class Explanation(ValueRecord):
    port: str
    direction: str
    summary: str
    conntrack: Conntrack
    verdict: str  # accept, drop or reject
    steps: tuple[Step, ...]
    roles: tuple[RoleResult, ...]

    @property
    def decided_by(self) -> Step | None:
        """The rule whose verdict ended the packet's way (None: no rule dropped it)."""
        if self.verdict == "accept":
            return None
        return next(s for s in reversed(self.steps) if s.matched)


def explain(
    contrib: Contribution,
    port: str,
    packet: Packet,
    direction: str,
    conntrack: Conntrack | None = None,
) -> Explanation:
    """The path of ``packet`` through ``port``'s rules in ``direction`` (``out``: from the guest)."""
    if direction not in ORDER:
        raise ExplainError(f"direction must be 'out' or 'in', not '{direction}'")
    ct = conntrack if conntrack is not None else lone_packet_state(packet)
    walker = _Walker(contrib, port, packet, ct)
    verdict = "accept"
    roles: list[RoleResult] = []
    for role in ORDER[direction]:
        chain = contrib.dispatch.get(role)
        if chain is None:
            roles.append(RoleResult(role, None, "unfiltered"))
            continue
        outcome = walker.run(role, chain)
        roles.append(RoleResult(role, chain, outcome))
        if outcome != "accept":
            verdict = outcome
            break
    summary = packet.summary()
    return Explanation(port, direction, summary, ct, verdict, tuple(walker.steps), tuple(roles))


class _Walker:
    def __init__(self, contrib: Contribution, port: str, p: Packet, ct: Conntrack) -> None:
        self.contrib, self.port, self.p, self.ct = contrib, port, p, ct
        self.steps: list[Step] = []

    def run(self, role: str, root: str) -> str:
        """accept (the role lets the packet go on), drop or reject."""
        stack: list[tuple[str, int]] = []
        chain, i = root, 0
        for _ in range(100_000):  # the chains are a DAG; a bound, not a limit met in practice
            rules = self.contrib.chains.get(chain)
            if rules is None:
                raise ExplainError(f"chain {chain} is not in the port's rules")
            if i >= len(rules):  # the end of a chain: back to the caller, or the role ends
                if not stack:
                    return "accept"
                chain, i = stack.pop()
                continue
            rule = rules[i]
            i += 1
            matched = self._rule(role, chain, i, rule)
            if not matched:
                continue
            kind = rule.verdict.kind
            if kind in ("accept", "drop", "reject"):
                return kind
            if kind == "return":
                if not stack:
                    return "accept"  # back in the base chain, whose policy accepts
                chain, i = stack.pop()
            elif kind == "jump":
                stack.append((chain, i))
                chain, i = rule.verdict.target or "", 0
            elif kind == "goto":
                chain, i = rule.verdict.target or "", 0
            elif kind != "continue":
                raise ExplainError(f"verdict {kind} is not known to explain")
        raise ExplainError("the port's chains loop")  # pragma: no cover

    def _rule(self, role: str, chain: str, position: int, rule: FilterRule) -> bool:
        checks: list[Check] = []
        variables: list[tuple[str, tuple[str, ...]]] = []
        ok = True
        for m in rule.matches:
            if not ok:
                checks.append(Check(_describe(m), None))
                continue
            check = self._stmt(m, variables)
            checks.append(check)
            ok = bool(check.held)
        v = rule.verdict
        verdict = f"{v.kind} {v.target}" if v.target else v.kind
        note = ""
        if v.kind in ("jump", "goto") and v.target:
            note = "into the chain of " + ", ".join(_filters_of(self.contrib, v.target))
        self.steps.append(
            Step(
                role,
                chain,
                position,
                rule.origin,
                verdict,
                ok,
                tuple(checks),
                tuple(variables),
                note,
            )
        )
        return ok

    # ------------------------------------------------------------------------- statements

    def _stmt(self, s: ir.Stmt, variables: list[tuple[str, tuple[str, ...]]]) -> Check:
        if isinstance(s, Lookup):
            return self._lookup(s, variables)
        if isinstance(s, ir.CtState):
            return self._ct(s)
        if isinstance(s, ir.Match):
            return self._match(s)
        raise ExplainError(f"statement {type(s).__name__} is not known to explain")

    def _load(self, e: ir.Value) -> tuple[int | None, int]:
        """The packet's value of expression ``e`` and its width in bits (None: nft breaks)."""
        if isinstance(e, ir.Payload):
            spec = _FIELDS.get((e.protocol, e.field))
            if spec is None:
                raise ExplainError(f"field {e.protocol} {e.field} is not known to explain")
            need_et = _NEEDS_ETHERTYPE.get(e.protocol)
            if need_et is not None and self.p.ethertype != need_et:
                return None, spec[2]
            need_l4 = _NEEDS_L4PROTO.get(e.protocol)
            if need_l4 is not None and self.p.l4proto != need_l4:
                return None, spec[2]
            return self.p.load(*spec), spec[2]
        if isinstance(e, ir.RawPayload):
            return self.p.load(e.base, e.offset, e.length), e.length
        if isinstance(e, ir.Meta) and e.key == "l4proto":
            return self.p.l4proto, 8
        if isinstance(e, ir.TcpOption):
            present = tcp_option_present(self.p, e.kind)
            return (e.kind if present else None), 8
        raise ExplainError(f"expression {e!r} is not known to explain")

    def _match(self, s: ir.Match) -> Check:
        value, bits = self._load(s.left)
        what = _describe(s)
        if value is None:
            return Check(what, False, "absent")
        held = _compare(value, bits, s.right)
        if s.op == "!=":
            held = not held
        return Check(what, held, _show(value, bits, s.left))

    def _lookup(self, s: Lookup, variables: list[tuple[str, tuple[str, ...]]]) -> Check:
        loaded = [self._load(f) for f in s.fields]
        names = _slot_variables(self.contrib, s.set)
        mine = [e[1:] for e in self.contrib.elements.get(s.set, []) if e and e[0] == self.port]
        shown = tuple(" . ".join(str(x) for x in e) for e in mine)
        variables.append((" . ".join(names) if names else s.set, shown))
        what = _describe(s, names)
        if any(v is None for v, _ in loaded):
            return Check(what, False, "absent")
        key = tuple(v for v, _ in loaded)
        widths = [b for _, b in loaded]
        member = any(
            len(e) == len(key)
            and all(_const(x, w) == k for x, w, k in zip(e, widths, key, strict=True))
            for e in mine
        )
        value = " . ".join(
            _show(v, w, f) for (v, w), f in zip(loaded, s.fields, strict=True) if v is not None
        )
        return Check(what, member != s.negated, value)

    def _ct(self, s: ir.CtState) -> Check:
        ct = self.ct
        what = _describe(s)
        if ct.state is None:
            return Check(what, False, "not tracked")
        held = ct.state.upper() in s.states
        if s.direction is not None:
            held = held and ct.reply == (s.direction == "reply")
        return Check(what, held, f"{ct.state}, {'reply' if ct.reply else 'original'}")


# ----------------------------------------------------------------------------- values


def _const(v: Any, bits: int) -> int:
    """A constant of the IR (int, MAC, address or number text) as the integer nft compares."""
    if isinstance(v, int):
        return v
    text = str(v)
    try:
        return int(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ":" in text:
        return int(text.replace(":", ""), 16)
    return int(text, 0)


def _compare(value: int, bits: int, right: ir.Value) -> bool:
    if isinstance(right, ir.Prefix):
        shift = bits - right.length
        return value >> shift == _const(right.addr, bits) >> shift
    if isinstance(right, ir.Range):
        return _const(right.low, bits) <= value <= _const(right.high, bits)
    if isinstance(right, ir.Masked):
        return value & _const(right.mask, bits) == _const(right.value, bits)
    if isinstance(right, ir.AnonSet):
        return any(_compare(value, bits, item) for item in right.items)
    if isinstance(right, ir.Expr):
        raise ExplainError(f"value {right!r} is not known to explain")
    return value == _const(right, bits)


def _show(value: int, bits: int, expr: ir.Value) -> str:
    field = expr.field if isinstance(expr, ir.Payload) else ""
    if bits == 48:
        return value.to_bytes(6, "big").hex(":")
    if bits == 32 and ("addr" in field or field.endswith(" ip")):
        return str(ipaddress.IPv4Address(value))
    if bits == 128:
        return str(ipaddress.IPv6Address(value))
    if isinstance(expr, ir.Payload) and field == "type" and expr.protocol in ("ether", "vlan"):
        return f"0x{value:04x}"
    return str(value)


def _describe(s: ir.Stmt, names: list[str] | None = None) -> str:
    """A statement in nft's words (close to ``nft list``)."""
    if isinstance(s, Lookup):
        port = "iifname" if s.side == "out" else "oifname"
        fields = " . ".join(_expr(f) for f in s.fields)
        where = f"${', $'.join(names)}" if names else "@" + s.set
        return f"{port} . {fields} {'not in' if s.negated else 'in'} {where}"
    if isinstance(s, ir.CtState):
        states = ",".join(x.lower() for x in s.states)
        return f"ct state {states}" + (f" ct direction {s.direction}" if s.direction else "")
    if isinstance(s, ir.Match):
        op = "" if s.op == "==" else f"{s.op} "
        return f"{_expr(s.left)} {op}{_value(s.right)}"
    return repr(s)  # pragma: no cover


def _expr(e: ir.Value) -> str:
    if isinstance(e, ir.Payload):
        return f"{e.protocol} {e.field}"
    if isinstance(e, ir.RawPayload):
        return f"@{e.base},{e.offset},{e.length}"
    if isinstance(e, ir.Meta):
        return f"meta {e.key}"
    if isinstance(e, ir.TcpOption):
        return f"tcp option {e.kind}"
    return str(e)


def _value(v: ir.Value) -> str:
    if isinstance(v, ir.Prefix):
        return f"{v.addr}/{v.length}"
    if isinstance(v, ir.Range):
        return f"{_value(v.low)}-{_value(v.high)}"
    if isinstance(v, ir.Masked):
        return f"{_value(v.value)}/{_value(v.mask)}"
    if isinstance(v, ir.AnonSet):
        return "{ " + ", ".join(_value(i) for i in v.items) + " }"
    if isinstance(v, int) and v > 255:
        return f"0x{v:x}"
    return str(v)


def _slot_variables(contrib: Contribution, set_name: str) -> list[str]:
    spec = contrib.slots.get(set_name)
    fields = getattr(spec, "fields", None)
    if not fields:
        return []
    return [ref.name for _field, ref in fields]


def _filters_of(contrib: Contribution, chain: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in contrib.chains.get(chain, ()):
        if r.origin is not None:
            seen[r.origin.filter] = None
    return list(seen) or [chain]


def to_json(e: Explanation, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The explanation as JSON: ``{"verdict": ..., "rules": [...], ...}``."""
    files = files or {}

    def origin(o: Origin | None) -> dict[str, Any] | None:
        if o is None:
            return None
        return {
            "filter": o.filter, "path": list(o.path), "index": o.index, "line": o.line,
            "file": files.get(o.filter), "copy": o.copy or None,
        }  # fmt: skip

    decided = e.decided_by
    return {
        "port": e.port,
        "direction": e.direction,
        "packet": e.summary,
        "conntrack": {
            "state": e.conntrack.state,
            "reply": e.conntrack.reply,
            "assumed": e.conntrack.assumed,
        },
        "verdict": e.verdict,
        "decided_by": None if decided is None else e.steps.index(decided),
        "roles": [{"role": r.role, "chain": r.chain, "outcome": r.outcome} for r in e.roles],
        "rules": [
            {
                "role": s.role,
                "chain": s.chain,
                "position": s.position,
                "origin": origin(s.origin),
                "verdict": s.verdict,
                "matched": s.matched,
                "checks": [{"what": c.what, "held": c.held, "value": c.value} for c in s.checks],
                "variables": {k: list(v) for k, v in s.variables},
                "note": s.note or None,
            }
            for s in e.steps
        ],
    }


def to_text(e: Explanation, files: Mapping[str, str] | None = None) -> str:
    """The explanation for a terminal: one block per rule met, then the verdict."""
    files = files or {}
    side = "from the guest" if e.direction == "out" else "to the guest"
    out = [f"packet {side} on {e.port}: {e.summary}", f"conntrack: {e.conntrack.describe()}"]
    role_names = {"l2o": "Ethernet layer", "l2i": "Ethernet layer", "l4o": "IP layer",
                  "l4i": "IP layer"}  # fmt: skip
    for r in e.roles:
        out.append("")
        out.append(f"{role_names[r.role]} ({r.role}): " + (
            "no rules for this port" if r.chain is None else f"chain {r.chain}"))  # fmt: skip
        for s in (s for s in e.steps if s.role == r.role):
            mark = "MATCH" if s.matched else "no match"
            if s.origin is not None:
                o = s.origin
                where = files.get(o.filter, f"{o.filter}.xml")
                at = f"{where}:{o.line}" if o.line else where
                copy = f" ({o.copy} copy)" if o.copy else ""
                head = f"{' > '.join(o.path)} rule[{o.index}]{copy} at {at}"
            else:
                head = f"nwguard: {s.note}" if s.note else "nwguard rule"
            out.append(f"  [{s.chain}#{s.position}] {head}: {s.verdict} -- {mark}")
            for c in s.checks:
                state = {True: "yes", False: "NO", None: "not reached"}[c.held]
                val = f" (packet: {c.value})" if c.value is not None else ""
                out.append(f"      {c.what}: {state}{val}")
            for name, values in s.variables:
                out.append(f"      variable {name} = {', '.join(values) or '(no value)'}")
        if r.chain is not None:
            out.append(f"  -> {r.outcome}")
    out.append("")
    decided = e.decided_by
    tail = ""
    if decided is not None and decided.origin is not None:
        tail = f" by {decided.origin.filter} rule[{decided.origin.index}]"
    out.append(f"verdict: {e.verdict.upper()}{tail}")
    return "\n".join(out)
