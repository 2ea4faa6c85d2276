"""libvirt nwfilter XML ⇄ :class:`nwguard.model.filter.Filter`.

>>> f = parse_filter("<filter name='f'><rule action='drop' direction='out'><tcp dstportstart='25'/></rule></filter>")
>>> print(write_filter(f).split(chr(10))[2])
  <rule action='drop' direction='out' priority='500'>
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from nwguard.model import protocols as P
from nwguard.model.filter import AttrValue, Entry, Filter, FilterRef, Params, Rule, make_params
from nwguard.model.names import FILTER_NAME, UUID
from nwguard.model.values import (
    VAR_NAME_RE,
    VAR_VALUE_RE,
    BadValue,
    VarRef,
    format_value,
    parse_value,
)
from nwguard.xmlio.common import (
    Ctx,
    Node,
    attributes,
    check_attrs,
    children,
    line_of,
    write_xml,
)
from nwguard.xmlio.plain import parse_document

if TYPE_CHECKING:  # lxml parses only what xmlio.plain does not take (start-up)
    from lxml import etree

_CHAIN_CHARS = re.compile(r"[A-Za-z0-9_.:-]+")
_INT_RE = re.compile(r"[+-]?[0-9]+")

RuleCheck = Callable[[Rule], tuple[str | None, str] | None]
"""Refuses a rule with ``(attribute or None, message)``, accepts it with None."""
Warn = Callable[[str], None]
"""Lenient mode: takes one warning per ignored attribute or element."""


def _ignored(warn: Warn, ctx: Ctx, el: etree._Element, what: str) -> None:
    warn(f"{ctx.file or '<input>'}:{line_of(el)}: {what} ignored (lenient mode, as libvirt)")


def _known_attrs(
    ctx: Ctx, el: etree._Element, path: str, allowed: tuple[str, ...], warn: Warn | None
) -> None:
    """Refuse an unknown attribute of ``el``; lenient (``warn``): warn and go on."""
    if warn is None:
        check_attrs(ctx, el, path, allowed)
        return
    for key, _ in attributes(el):
        if key not in allowed:
            _ignored(warn, ctx, el, f"unknown attribute '{key}' of <{el.tag}>")


def parse_filter(
    data: str | bytes,
    file: str | None = None,
    *,
    missing_uuid: Callable[[str], str] | None = None,
    check_rule: RuleCheck | None = None,
    warn: Warn | None = None,
) -> Filter:
    """Parse and check one ``<filter>`` document; raise XMLError naming what is wrong.

    A document without ``<uuid>`` gets ``missing_uuid(name)`` when given (the store passes the
    uuid of an existing filter of that name), else a random uuid. ``check_rule`` (define
    passes the compiler's :func:`~nwguard.compile.check.unbindable`) may refuse a parsed
    rule: its ``(attribute, message)`` becomes an error located like any other.

    With ``warn`` (lenient mode, ``nwfilter-define --lenient``) unknown attributes and
    elements are ignored as libvirt ignores them, each reported once to ``warn`` with file,
    line and name; everything else is checked as in strict mode.
    """
    ctx, root = parse_document(data, file, "filter")
    name = root.get("name")
    path = f"/filter[@name='{name}']" if name else "/filter"
    _known_attrs(ctx, root, path, ("name", "chain", "priority"), warn)
    if name is None:
        raise ctx.error(root, path, "filter has no name", "name")
    if not FILTER_NAME.accepts(name):
        raise ctx.error(
            root, path, f"invalid filter name '{name}'; allowed: {FILTER_NAME.allowed}", "name"
        )
    chain = _parse_chain(ctx, root, path)
    priority = _parse_int(ctx, root, path, "priority", None)
    if priority is None:
        priority = P.DEFAULT_CHAIN_PRIORITY[P.chain_prefix(chain)]
    elif root.get("chain") is None:
        priority = 0  # libvirt checks the value but keeps root's priority
    uuid: str | None = None
    entries: list[Entry] = []
    rule_no = ref_no = 0
    for el in children(root):
        if el.tag == "uuid":
            if uuid is not None:
                raise ctx.error(el, f"{path}/uuid", "<uuid> is given twice")
            uuid = _parse_uuid(ctx, el, path)
        elif el.tag == "rule":
            rule_no += 1
            entries.append(_parse_rule(ctx, el, f"{path}/rule[{rule_no}]", check_rule, warn))
        elif el.tag == "filterref":
            ref_no += 1
            entries.append(_parse_filterref(ctx, el, f"{path}/filterref[{ref_no}]", warn))
        elif warn is not None:
            _ignored(warn, ctx, el, f"unknown element <{el.tag}> in <filter>")
        else:
            raise ctx.error(
                el,
                f"{path}/{el.tag}",
                f"unknown element <{el.tag}>; allowed: uuid, rule, filterref",
            )
    if uuid is None:
        uuid = missing_uuid(name) if missing_uuid else _random_uuid()
    return Filter(name, uuid, chain, priority, tuple(entries))


def _random_uuid() -> str:
    import uuid as uuidlib  # where used: the store's files all have one (start-up)

    return str(uuidlib.uuid4())


def _parse_chain(ctx: Ctx, el: etree._Element, path: str) -> str:
    chain = el.get("chain", "root")
    allowed = "'root' or a name starting with " + ", ".join(P.CHAIN_PREFIXES)
    if len(chain) > P.MAX_CHAIN_NAME:
        raise ctx.error(
            el, path, f"chain name '{chain}' is longer than {P.MAX_CHAIN_NAME} characters", "chain"
        )
    if not _CHAIN_CHARS.fullmatch(chain):
        raise ctx.error(
            el,
            path,
            f"chain name '{chain}' contains invalid characters; allowed: A-Z a-z 0-9 _ . : -",
            "chain",
        )
    if (
        chain.startswith("root")
        and chain != "root"
        or not chain.startswith(("root", *P.CHAIN_PREFIXES))
    ):
        raise ctx.error(el, path, f"invalid chain name '{chain}'; use {allowed}", "chain")
    return chain


def _parse_int(
    ctx: Ctx, el: etree._Element, path: str, attr: str, default: int | None
) -> int | None:
    text = el.get(attr)
    if text is None:
        return default
    value = int(text.strip(), 10) if _INT_RE.fullmatch(text.strip()) else None
    if value is None or not P.MIN_PRIORITY <= value <= P.MAX_PRIORITY:
        raise ctx.error(
            el,
            path,
            f"priority '{text}' is not an integer in [{P.MIN_PRIORITY},{P.MAX_PRIORITY}]",
            attr,
        )
    return value


def _parse_uuid(ctx: Ctx, el: etree._Element, path: str) -> str:
    text = el.text or ""
    try:
        uuid: str = UUID.parse(text)
    except BadValue:
        raise ctx.error(el, f"{path}/uuid", f"malformed uuid '{text.strip()}'") from None
    return uuid


def _parse_rule(
    ctx: Ctx,
    el: etree._Element,
    path: str,
    check: RuleCheck | None = None,
    warn: Warn | None = None,
) -> Rule:
    _known_attrs(ctx, el, path, ("action", "direction", "priority", "statematch"), warn)
    action, direction = el.get("action"), el.get("direction")
    if action not in P.ACTIONS:
        msg = "rule has no action" if action is None else f"unknown action '{action}'"
        raise ctx.error(el, path, f"{msg}; allowed: {', '.join(P.ACTIONS)}", "action")
    if direction not in P.DIRECTIONS:
        msg = "rule has no direction" if direction is None else f"unknown direction '{direction}'"
        raise ctx.error(el, path, f"{msg}; allowed: {', '.join(P.DIRECTIONS)}", "direction")
    priority = _parse_int(ctx, el, path, "priority", P.DEFAULT_RULE_PRIORITY)
    statematch = _parse_statematch(ctx, el, path)
    protocol, attrs = _parse_rule_body(ctx, el, path, warn)
    rule = Rule(action, direction, priority, statematch, protocol, attrs, line_of(el))
    _check_ports(ctx, el, path, rule)
    problem = check(rule) if check is not None else None
    if problem is not None:
        attr, msg = problem
        # the protocol element holds the attributes
        body = [c for c in children(el) if P.PROTOCOL_ALIASES.get(c.tag, c.tag) in P.PROTOCOLS]
        if body:
            raise ctx.error(body[0], f"{path}/{body[0].tag}", msg, attr)
        raise ctx.error(el, path, msg)
    return rule


def _parse_statematch(ctx: Ctx, el: etree._Element, path: str) -> bool:
    text = el.get("statematch")
    if text is None or text.lower() in ("1", "true"):
        return True
    if text.lower() in ("0", "false"):
        return False
    raise ctx.error(
        el, path, f"invalid statematch '{text}'; allowed: false, 0, true, 1", "statematch"
    )


def _parse_rule_body(
    ctx: Ctx, el: etree._Element, path: str, warn: Warn | None = None
) -> tuple[str | None, tuple[AttrValue, ...]]:
    protocol: str | None = None
    found: dict[str, AttrValue] = {}
    for child in children(el):
        name = P.PROTOCOL_ALIASES.get(child.tag, child.tag)
        cpath = f"{path}/{child.tag}"
        if name not in P.PROTOCOLS and warn is not None:
            _ignored(warn, ctx, child, f"unknown element <{child.tag}> in <rule>")
            continue
        if name not in P.PROTOCOLS:
            raise ctx.error(
                child, cpath, f"unknown protocol <{child.tag}>; allowed: {', '.join(P.PROTOCOLS)}"
            )
        if protocol is not None and name != protocol:
            raise ctx.error(
                child, cpath, f"a rule holds one protocol; found <{child.tag}> after <{protocol}>"
            )
        protocol = name
        for av in _parse_proto_element(ctx, child, cpath, P.PROTOCOLS[name], warn):
            if av.name in found:
                raise ctx.error(
                    child, cpath, f"attribute '{av.name}' is given twice in this rule", av.name
                )
            found[av.name] = av
    if protocol is None:
        return None, ()
    proto = P.PROTOCOLS[protocol]
    ordered = [found[n] for n in proto.attr_names if n in found]
    return protocol, tuple(_inherit_negation(proto, ordered))


def _parse_proto_element(
    ctx: Ctx, el: etree._Element, path: str, proto: P.Protocol, warn: Warn | None = None
) -> list[AttrValue]:
    if children(el) and warn is not None:
        for child in children(el):
            _ignored(warn, ctx, child, f"element <{child.tag}> in <{el.tag}>")
    elif children(el):
        raise ctx.error(el, path, f"<{el.tag}> takes attributes only, no child elements")
    match = el.get("match", "yes")
    if match not in ("yes", "no"):
        raise ctx.error(el, path, f"invalid match '{match}'; allowed: yes, no", "match")
    out: list[AttrValue] = []
    for key, text in attributes(el):
        if key == "match":
            continue
        attr = proto.attr(key)
        if attr is None and warn is not None:
            _ignored(warn, ctx, el, f"unknown attribute '{key}' of <{el.tag}>")
            continue
        if attr is None:
            allowed = ", ".join(("match", *proto.attr_names))
            raise ctx.error(
                el, path, f"unknown attribute '{key}' for <{el.tag}>; allowed: {allowed}", key
            )
        try:
            value = parse_value(attr.type, text)
        except BadValue as exc:
            raise ctx.error(
                el, path, f"illegal value '{text}'; expected {exc.allowed}", key
            ) from None
        out.append(AttrValue(key, value, match == "no"))
    return out


def _inherit_negation(proto: P.Protocol, attrs: list[AttrValue]) -> list[AttrValue]:
    """Masks and range ends take the negation of their base attribute, as in libvirt."""
    neg = {a.name: a.negated for a in attrs}
    out = []
    for a in attrs:
        attr = proto.attr(a.name)
        base = attr.base if attr else None
        if base and base in neg and neg[base] != a.negated:
            a = AttrValue(a.name, a.value, neg[base])
        out.append(a)
    return out


def _check_ports(ctx: Ctx, el: etree._Element, path: str, rule: Rule) -> None:
    if rule.protocol not in ("ip", "ipv6"):
        return
    if not any(rule.get(p) for p in P.PORT_ATTRS):
        return
    proto = rule.get("protocol")
    if proto is not None and isinstance(proto.value, VarRef):
        return
    if proto is None or proto.value.value not in P.PORT_PROTOCOLS:
        raise ctx.error(
            el,
            path,
            "a port match needs protocol tcp (6), udp (17), dccp (33) or sctp (132)",
            "protocol",
        )


def _parse_filterref(
    ctx: Ctx, el: etree._Element, path: str, warn: Warn | None = None
) -> FilterRef:
    _known_attrs(ctx, el, path, ("filter",), warn)
    target = el.get("filter")
    if target is None:
        raise ctx.error(el, path, "filterref has no filter attribute", "filter")
    if not FILTER_NAME.accepts(target):
        raise ctx.error(
            el, path, f"invalid filter name '{target}'; allowed: {FILTER_NAME.allowed}", "filter"
        )
    return FilterRef(target, parse_parameters(ctx, el, path))


def parse_filterref(ctx: Ctx, el: etree._Element, path: str) -> FilterRef:
    """A ``<filterref>`` as a binding or a domain interface carries it: target and parameters."""
    target = el.get("filter")
    if target is None or not FILTER_NAME.accepts(target):
        raise ctx.error(
            el, path, f"invalid filter '{target}'; allowed: {FILTER_NAME.allowed}", "filter"
        )
    return FilterRef(target, parse_parameters(ctx, el, path))


def parse_parameters(ctx: Ctx, el: etree._Element, path: str) -> Params:
    """``<parameter name= value=>`` children; a repeated name makes a list."""
    pairs = []
    for i, p in enumerate(children(el), 1):
        ppath = f"{path}/parameter[{i}]"
        if p.tag != "parameter":
            raise ctx.error(p, f"{path}/{p.tag}", f"unknown element <{p.tag}>; allowed: parameter")
        check_attrs(ctx, p, ppath, ("name", "value"))
        name, value = p.get("name"), p.get("value")
        if name is None or not VAR_NAME_RE.fullmatch(name):
            raise ctx.error(
                p, ppath, f"invalid parameter name '{name}'; allowed: A-Z a-z 0-9 _", "name"
            )
        if value is None or not VAR_VALUE_RE.fullmatch(value):
            raise ctx.error(
                p, ppath, f"invalid parameter value '{value}'; allowed: A-Z a-z 0-9 _ . :", "value"
            )
        pairs.append((name, value))
    return make_params(pairs)


# ----------------------------------------------------------------------------- writing


def write_filter(f: Filter) -> str:
    """Serialise as libvirt does: chain always, chain priority when non-zero, 2-space indent."""
    # libvirt writes the chain priority when non-zero; a 0 that is not the chain's default
    # (chain='mac' priority='0') must be written too, or it reads back as the default.
    written = f.priority or P.DEFAULT_CHAIN_PRIORITY[P.chain_prefix(f.chain)]
    attrs = (("name", f.name), ("chain", f.chain), ("priority", f.priority if written else None))
    body = (Node("uuid", text=f.uuid), *(_entry_node(e) for e in f.entries))
    return write_xml(Node("filter", attrs, body))


def _entry_node(e: Entry) -> Node:
    if isinstance(e, FilterRef):
        return filterref_node(e)
    attrs = (
        ("action", e.action),
        ("direction", e.direction),
        ("priority", e.priority),
        ("statematch", None if e.statematch else "false"),
    )
    return Node("rule", attrs, _proto_nodes(e))


def _proto_nodes(rule: Rule) -> tuple[Node, ...]:
    """The protocol element(s): one per run of attributes with the same negation."""
    proto = rule.proto
    if proto is None:
        return ()
    if not rule.attrs:
        return (Node(proto.name),)
    groups: list[list[AttrValue]] = []
    for a in rule.attrs:
        if groups and groups[-1][0].negated == a.negated:
            groups[-1].append(a)
        else:
            groups.append([a])
    nodes = []
    for group in groups:
        attrs: list[tuple[str, object]] = [("match", "no")] if group[0].negated else []
        for a in group:
            attr = proto.attr(a.name)
            assert attr is not None
            attrs.append((a.name, format_value(attr.type, a.value)))
        nodes.append(Node(proto.name, tuple(attrs)))
    return tuple(nodes)


def filterref_node(ref: FilterRef) -> Node:
    """``<filterref>`` with one ``<parameter>`` per value (a list repeats its name)."""
    params = tuple(
        Node("parameter", (("name", name), ("value", v)))
        for name, values in ref.params
        for v in values
    )
    return Node("filterref", (("filter", ref.filter),), params)
