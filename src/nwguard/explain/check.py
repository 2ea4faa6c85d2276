"""``nwguard nwfilter-check``: static findings on a filter and the filters it references (pure).

The filter is compiled as the engine would compile it for a port, with a placeholder value
for each variable, and each compiled chain is read in order:

* ``never``: a rule that cannot match any packet (two different values for one field, an
  empty range), or that libvirt installs no copy of at all (an ICMP rule with a type in
  direction ``inout``);
* ``shadowed``: an earlier rule of the same chain matches every packet this one matches and
  ends the chain's evaluation, so this one never decides (``conflict`` when the two come
  from different filters and one accepts where the other drops);
* ``variable``: a variable no ``<filterref>`` sets, other than ``MAC`` (always the binding's)
  and ``IP`` (the binding's, or learned): every binding must give it.
"""

from __future__ import annotations

from collections.abc import Mapping

from nwguard.compile.program import compile_port, l4_copies
from nwguard.errors import CompileError, ResolveError
from nwguard.ir import nodes as ir
from nwguard.ir.ports import FilterRule, Origin
from nwguard.model.filter import Filter
from nwguard.model.protocols import Layer
from nwguard.model.values import IP_PROTOCOL_NAMES, BadValue
from nwguard.records import ValueRecord
from nwguard.resolve.resolver import Pending, flatten, instantiate, references

_TERMINAL = {"accept", "drop", "reject", "return"}
# fields that carry nft's implicit ``meta l4proto`` dependency
_IMPLIED = {p: IP_PROTOCOL_NAMES[p] for p in ("tcp", "udp", "sctp", "icmp", "icmpv6")}
_L4PROTO = ir.Meta("l4proto")
_PROVIDED = {"MAC", "IP"}
_PLACEHOLDERS = ("02:00:00:00:00:01", "192.0.2.1", "2001:db8::1", "1", "0")


class Finding(ValueRecord):
    kind: str  # never, shadowed, conflict, variable, error
    filter: str
    index: int | None  # the rule's 1-based index in its filter (None: the filter as a whole)
    line: int | None
    message: str


def check(filters: Mapping[str, Filter], top: str) -> list[Finding]:
    """What is wrong or suspicious in ``top`` and everything it references."""
    try:
        pending = flatten(filters, top)
    except ResolveError as exc:
        return [Finding("error", top, None, None, str(exc))]
    findings = _variables(pending)
    findings += _no_copies(pending)
    params: dict[str, tuple[str, ...]] = {}
    for p in pending:
        for ref in p.variables:
            if ref.name not in params:
                params[ref.name] = (_placeholder(p, ref.name),)
    try:
        contrib = compile_port("check0", instantiate(pending, params))
    except (CompileError, ResolveError) as exc:
        return [*findings, Finding("error", top, None, None, str(exc))]
    seen: set[tuple[str, int | None, str]] = set()
    for rules in contrib.chains.values():
        for f in [*_never(rules), *_shadowed(rules)]:
            key = (f.filter, f.index, f.kind)
            if key not in seen:  # one finding per rule, not one per copy
                seen.add(key)
                findings.append(f)
    return sorted(findings, key=lambda f: (f.filter, f.index or 0, f.kind))


def _placeholder(p: Pending, name: str) -> str:
    """A value the attribute using ``$name`` accepts."""
    proto = p.rule.proto
    for a in p.rule.attrs:
        ref = a.value
        if proto is None or getattr(ref, "name", None) != name:
            continue
        attr = proto.attr(a.name)
        if attr is None:
            continue
        for candidate in _PLACEHOLDERS:
            try:
                attr.type.parse(candidate)
            except BadValue:
                continue
            return candidate
    return _PLACEHOLDERS[0]


def _variables(pending: list[Pending]) -> list[Finding]:
    out: dict[str, Finding] = {}
    for p in pending:
        for ref in p.variables:
            if ref.name in _PROVIDED or (p.defaults and ref.name in p.defaults):
                continue
            if ref.name not in out:
                out[ref.name] = Finding(
                    "variable", p.filter, p.index, p.rule.line,
                    f"${ref.name} is set by no <filterref>: every binding must give it",
                )  # fmt: skip
    return list(out.values())


def _no_copies(pending: list[Pending]) -> list[Finding]:
    out = []
    for p in pending:
        if p.rule.layer is not Layer.ETHERNET and p.rule.protocol and not l4_copies(p.rule):
            out.append(Finding(
                "never", p.filter, p.index, p.rule.line,
                f"{p.rule.protocol} with a type in direction 'inout' is installed in no "
                "direction (as libvirt): give 'in' and 'out' rules instead",
            ))  # fmt: skip
    return out


def _finding(kind: str, o: Origin, message: str) -> Finding:
    return Finding(kind, o.filter, o.index, o.line, message)


def _never(rules: tuple[FilterRule, ...]) -> list[Finding]:
    out = []
    for r in rules:
        if r.origin is None:
            continue
        wanted: dict[ir.Value, ir.Value] = {}
        for m in r.matches:
            if not isinstance(m, ir.Match) or m.op != "==":
                continue
            if isinstance(m.right, ir.Range) and _gt(m.right.low, m.right.high):
                out.append(_finding("never", r.origin, "its range is empty (start > end)"))
                break
            if isinstance(m.right, ir.Expr):
                continue
            implied = _IMPLIED.get(getattr(m.left, "protocol", ""))
            if implied is not None and wanted.get(_L4PROTO, implied) != implied:
                out.append(_finding(
                    "never", r.origin,
                    f"{_name(m.left)} needs IP protocol {implied}, the rule asks for "
                    f"{wanted[_L4PROTO]}",
                ))  # fmt: skip
                break
            if m.left in wanted and wanted[m.left] != m.right:
                out.append(_finding(
                    "never", r.origin,
                    f"it needs {_name(m.left)} to be both {wanted[m.left]} and {m.right}",
                ))  # fmt: skip
                break
            wanted[m.left] = m.right
    return out


def _gt(a: ir.Value, b: ir.Value) -> bool:
    return isinstance(a, int) and isinstance(b, int) and a > b


def _name(e: ir.Value) -> str:
    if isinstance(e, ir.Payload):
        return f"{e.protocol} {e.field}"
    if isinstance(e, ir.Meta):
        return f"meta {e.key}"
    return str(e)


def _shadowed(rules: tuple[FilterRule, ...]) -> list[Finding]:
    out = []
    for j, later in enumerate(rules):
        if later.origin is None:
            continue
        mine = set(later.matches)
        for earlier in rules[:j]:
            if earlier.verdict.kind not in _TERMINAL:
                continue
            o = earlier.origin
            a, b = earlier.verdict.kind, later.verdict.kind
            opposed = {a, b} & {"accept"} and {a, b} & {"drop", "reject"}
            other = o is not None and o.filter != later.origin.filter
            covers = set(earlier.matches) <= mine
            # across filters, an accept limited to connection states still overrides a drop
            stateless = {m for m in earlier.matches if not isinstance(m, ir.CtState)}
            if not covers and not (other and opposed and stateless <= mine):
                continue
            by = f"{o.filter} rule[{o.index}]" if o else "an earlier rule"
            if o is not None and (o.line is not None):
                by += f" (line {o.line})"
            if other and opposed:
                states = "" if covers else " (in the connection states it names)"
                msg = f"it would {b}, but {by} in another filter {a}s what it matches first{states}"
                out.append(_finding("conflict", later.origin, msg))
            else:
                what = "the same verdict" if a == b else f"'{a}'"
                msg = f"{by} matches every packet it matches first, with {what}: it never decides"
                out.append(_finding("shadowed", later.origin, msg))
            break
    return out


def dot(filters: Mapping[str, Filter], top: str) -> str:
    """The ``<filterref>`` DAG below ``top`` in Graphviz's DOT language."""
    lines = [f'digraph "{top}" {{', "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for name in sorted(references(filters, top)):  # reachable ones, missing ones included
        f = filters.get(name)
        if f is None:
            lines.append(f'  "{name}" [style=dashed, label="{name}\\n(missing)"];')
            continue
        label = f"{name}\\nchain {f.chain} ({f.priority}), {len(f.rules)} rules"
        lines.append(f'  "{name}" [label="{label}"];')
        for ref in f.refs:
            params = ", ".join(f"{k}={'|'.join(v)}" for k, v in ref.params)
            attr = f' [label="{params}"]' if params else ""
            lines.append(f'  "{name}" -> "{ref.filter}"{attr};')
    lines.append("}")
    return "\n".join(lines) + "\n"
