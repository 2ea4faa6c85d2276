"""libvirt nwfilter XML ⇄ :class:`nwguard.model.filter.Filter`.

>>> f = parse_filter("<filter name='f'><rule action='drop' direction='out'><tcp dstportstart='25'/></rule></filter>")
>>> print(write_filter(f).split(chr(10))[2])
  <rule action='drop' direction='out' priority='500'>
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable

from lxml import etree

from nwguard.errors import XMLError
from nwguard.model import protocols as P
from nwguard.model.filter import AttrValue, Entry, Filter, FilterRef, Rule, make_params
from nwguard.model.values import VAR_NAME_RE, VAR_VALUE_RE, BadValue, Num, VarRef, format_value, parse_value
from nwguard.xmlio.safe import children, parse_xml, quote, text_escape

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
NAME_ALLOWED = "1 to 128 characters of A-Z a-z 0-9 _ . -, starting with a letter or _"
_CHAIN_CHARS = re.compile(r"[A-Za-z0-9_.:-]+")
_INT_RE = re.compile(r"[+-]?[0-9]+")


class _Ctx:
    """Where we are in the document, to locate errors."""

    def __init__(self, file: str | None) -> None:
        self.file = file

    def error(self, el: etree._Element, path: str, msg: str, attr: str | None = None) -> XMLError:
        return XMLError(msg, file=self.file, line=el.sourceline, path=path, attribute=attr)


def parse_filter(
    data: str | bytes,
    file: str | None = None,
    *,
    missing_uuid: Callable[[str], str] | None = None,
) -> Filter:
    """Parse and check one ``<filter>`` document; raise XMLError naming what is wrong.

    A document without ``<uuid>`` gets ``missing_uuid(name)`` when given (the store passes the
    uuid of an existing filter of that name), else a random uuid.
    """
    root = parse_xml(data, file)
    ctx = _Ctx(file)
    if root.tag != "filter":
        raise ctx.error(root, f"/{root.tag}", f"unknown root element <{root.tag}>; expected <filter>")
    name = root.get("name")
    path = f"/filter[@name='{name}']" if name else "/filter"
    _check_attrs(ctx, root, path, ("name", "chain", "priority"))
    if name is None:
        raise ctx.error(root, path, "filter has no name", "name")
    if not NAME_RE.fullmatch(name):
        raise ctx.error(root, path, f"invalid filter name '{name}'; allowed: {NAME_ALLOWED}", "name")
    chain = _parse_chain(ctx, root, path)
    priority = _parse_int(ctx, root, path, "priority", None)
    if priority is None:
        priority = P.DEFAULT_CHAIN_PRIORITY[P.chain_prefix(chain)]
    elif root.get("chain") is None:
        priority = 0  # libvirt checks the value but keeps root's priority
    uuid, entries = None, []
    rule_no = ref_no = 0
    for el in children(root):
        if el.tag == "uuid":
            if uuid is not None:
                raise ctx.error(el, f"{path}/uuid", "<uuid> is given twice")
            uuid = _parse_uuid(ctx, el, path)
        elif el.tag == "rule":
            rule_no += 1
            entries.append(_parse_rule(ctx, el, f"{path}/rule[{rule_no}]"))
        elif el.tag == "filterref":
            ref_no += 1
            entries.append(_parse_filterref(ctx, el, f"{path}/filterref[{ref_no}]"))
        else:
            raise ctx.error(el, f"{path}/{el.tag}", f"unknown element <{el.tag}>; allowed: uuid, rule, filterref")
    if uuid is None:
        uuid = missing_uuid(name) if missing_uuid else str(uuidlib.uuid4())
    return Filter(name, uuid, chain, priority, tuple(entries))


def _check_attrs(ctx: _Ctx, el: etree._Element, path: str, allowed: tuple[str, ...]) -> None:
    for key in el.attrib:
        if key not in allowed:
            raise ctx.error(el, path, f"unknown attribute '{key}'; allowed: {', '.join(allowed)}", key)


def _parse_chain(ctx: _Ctx, el: etree._Element, path: str) -> str:
    chain = el.get("chain", "root")
    allowed = "'root' or a name starting with " + ", ".join(P.CHAIN_PREFIXES)
    if len(chain) > P.MAX_CHAIN_NAME:
        raise ctx.error(el, path, f"chain name '{chain}' is longer than {P.MAX_CHAIN_NAME} characters", "chain")
    if not _CHAIN_CHARS.fullmatch(chain):
        raise ctx.error(el, path, f"chain name '{chain}' contains invalid characters; allowed: A-Z a-z 0-9 _ . : -", "chain")
    if chain.startswith("root") and chain != "root" or not chain.startswith(("root", *P.CHAIN_PREFIXES)):
        raise ctx.error(el, path, f"invalid chain name '{chain}'; use {allowed}", "chain")
    return chain


def _parse_int(ctx: _Ctx, el: etree._Element, path: str, attr: str, default: int | None) -> int | None:
    text = el.get(attr)
    if text is None:
        return default
    value = int(text.strip(), 10) if _INT_RE.fullmatch(text.strip()) else None
    if value is None or not P.MIN_PRIORITY <= value <= P.MAX_PRIORITY:
        raise ctx.error(
            el, path, f"priority '{text}' is not an integer in [{P.MIN_PRIORITY},{P.MAX_PRIORITY}]", attr
        )
    return value


def _parse_uuid(ctx: _Ctx, el: etree._Element, path: str) -> str:
    try:
        return str(uuidlib.UUID((el.text or "").strip()))
    except ValueError:
        raise ctx.error(el, f"{path}/uuid", f"malformed uuid '{(el.text or '').strip()}'") from None


def _parse_rule(ctx: _Ctx, el: etree._Element, path: str) -> Rule:
    _check_attrs(ctx, el, path, ("action", "direction", "priority", "statematch"))
    action, direction = el.get("action"), el.get("direction")
    if action not in P.ACTIONS:
        msg = "rule has no action" if action is None else f"unknown action '{action}'"
        raise ctx.error(el, path, f"{msg}; allowed: {', '.join(P.ACTIONS)}", "action")
    if direction not in P.DIRECTIONS:
        msg = "rule has no direction" if direction is None else f"unknown direction '{direction}'"
        raise ctx.error(el, path, f"{msg}; allowed: {', '.join(P.DIRECTIONS)}", "direction")
    priority = _parse_int(ctx, el, path, "priority", P.DEFAULT_RULE_PRIORITY)
    statematch = _parse_statematch(ctx, el, path)
    protocol, attrs = _parse_rule_body(ctx, el, path)
    rule = Rule(action, direction, priority, statematch, protocol, attrs)  # type: ignore[arg-type]
    _check_ports(ctx, el, path, rule)
    return rule


def _parse_statematch(ctx: _Ctx, el: etree._Element, path: str) -> bool:
    text = el.get("statematch")
    if text is None or text.lower() in ("1", "true"):
        return True
    if text.lower() in ("0", "false"):
        return False
    raise ctx.error(el, path, f"invalid statematch '{text}'; allowed: false, 0, true, 1", "statematch")


def _parse_rule_body(ctx: _Ctx, el: etree._Element, path: str) -> tuple[str | None, tuple[AttrValue, ...]]:
    protocol: str | None = None
    found: dict[str, AttrValue] = {}
    for child in children(el):
        name = P.PROTOCOL_ALIASES.get(child.tag, child.tag)
        cpath = f"{path}/{child.tag}"
        if name not in P.PROTOCOLS:
            raise ctx.error(child, cpath, f"unknown protocol <{child.tag}>; allowed: {', '.join(P.PROTOCOLS)}")
        if protocol is not None and name != protocol:
            raise ctx.error(
                child, cpath, f"a rule holds one protocol; found <{child.tag}> after <{protocol}>"
            )
        protocol = name
        for av in _parse_proto_element(ctx, child, cpath, P.PROTOCOLS[name]):
            if av.name in found:
                raise ctx.error(child, cpath, f"attribute '{av.name}' is given twice in this rule", av.name)
            found[av.name] = av
    if protocol is None:
        return None, ()
    proto = P.PROTOCOLS[protocol]
    ordered = [found[n] for n in proto.attr_names if n in found]
    return protocol, tuple(_inherit_negation(proto, ordered))


def _parse_proto_element(ctx: _Ctx, el: etree._Element, path: str, proto: P.Protocol) -> list[AttrValue]:
    if children(el):
        raise ctx.error(el, path, f"<{el.tag}> takes attributes only, no child elements")
    match = el.get("match", "yes")
    if match not in ("yes", "no"):
        raise ctx.error(el, path, f"invalid match '{match}'; allowed: yes, no", "match")
    out = []
    for key, text in el.attrib.items():
        if key == "match":
            continue
        attr = proto.attr(key)
        if attr is None:
            allowed = ", ".join(("match", *proto.attr_names))
            raise ctx.error(el, path, f"unknown attribute '{key}' for <{el.tag}>; allowed: {allowed}", key)
        try:
            value = parse_value(attr.type, text)
        except BadValue as exc:
            raise ctx.error(el, path, f"illegal value '{text}'; expected {exc.allowed}", key) from None
        out.append(AttrValue(key, value, match == "no"))
    return out


def _inherit_negation(proto: P.Protocol, attrs: list[AttrValue]) -> list[AttrValue]:
    """Masks and range ends take the negation of their base attribute, as in libvirt."""
    neg = {a.name: a.negated for a in attrs}
    out = []
    for a in attrs:
        base = proto.attr(a.name).base  # type: ignore[union-attr]
        if base and base in neg and neg[base] != a.negated:
            a = AttrValue(a.name, a.value, neg[base])
        out.append(a)
    return out


def _check_ports(ctx: _Ctx, el: etree._Element, path: str, rule: Rule) -> None:
    if rule.protocol not in ("ip", "ipv6"):
        return
    if not any(rule.get(p) for p in P.PORT_ATTRS):
        return
    proto = rule.get("protocol")
    if proto is not None and isinstance(proto.value, VarRef):
        return
    if proto is None or proto.value.value not in P.PORT_PROTOCOLS:
        raise ctx.error(
            el, path, "a port match needs protocol tcp (6), udp (17), dccp (33) or sctp (132)", "protocol"
        )


def _parse_filterref(ctx: _Ctx, el: etree._Element, path: str) -> FilterRef:
    _check_attrs(ctx, el, path, ("filter",))
    target = el.get("filter")
    if target is None:
        raise ctx.error(el, path, "filterref has no filter attribute", "filter")
    if not NAME_RE.fullmatch(target):
        raise ctx.error(el, path, f"invalid filter name '{target}'; allowed: {NAME_ALLOWED}", "filter")
    return FilterRef(target, parse_parameters(ctx, el, path))


def parse_parameters(ctx: _Ctx, el: etree._Element, path: str) -> tuple:
    """``<parameter name= value=>`` children; a repeated name makes a list."""
    pairs = []
    for i, p in enumerate(children(el), 1):
        ppath = f"{path}/parameter[{i}]"
        if p.tag != "parameter":
            raise ctx.error(p, f"{path}/{p.tag}", f"unknown element <{p.tag}>; allowed: parameter")
        _check_attrs(ctx, p, ppath, ("name", "value"))
        name, value = p.get("name"), p.get("value")
        if name is None or not VAR_NAME_RE.fullmatch(name):
            raise ctx.error(p, ppath, f"invalid parameter name '{name}'; allowed: A-Z a-z 0-9 _", "name")
        if value is None or not VAR_VALUE_RE.fullmatch(value):
            raise ctx.error(p, ppath, f"invalid parameter value '{value}'; allowed: A-Z a-z 0-9 _ . :", "value")
        pairs.append((name, value))
    return make_params(pairs)


# ----------------------------------------------------------------------------- writing


def write_filter(f: Filter) -> str:
    """Serialise as libvirt does: chain always, chain priority when non-zero, 2-space indent."""
    head = f"<filter name={quote(f.name)} chain={quote(f.chain)}"
    # libvirt writes the chain priority when non-zero; a 0 that is not the chain's default
    # (chain='mac' priority='0') must be written too, or it reads back as the default.
    if f.priority or P.DEFAULT_CHAIN_PRIORITY[P.chain_prefix(f.chain)]:
        head += f" priority={quote(str(f.priority))}"
    lines = [head + ">", f"  <uuid>{f.uuid}</uuid>"]
    for e in f.entries:
        lines.extend(_write_entry(e))
    lines.append("</filter>")
    return "\n".join(lines) + "\n"


def _write_entry(e: Entry) -> list[str]:
    if isinstance(e, FilterRef):
        return write_filterref(e, "  ")
    head = f"  <rule action={quote(e.action)} direction={quote(e.direction)} priority={quote(str(e.priority))}"
    if not e.statematch:
        head += " statematch='false'"
    if not e.attrs and e.protocol is None:
        return [head + "/>"]
    return [head + ">", *_write_proto(e), "  </rule>"]


def _write_proto(rule: Rule) -> list[str]:
    proto = rule.proto
    assert proto is not None
    if not rule.attrs:
        return [f"    <{proto.name}/>"]
    groups: list[list[AttrValue]] = []
    for a in rule.attrs:
        if groups and groups[-1][0].negated == a.negated:
            groups[-1].append(a)
        else:
            groups.append([a])
    lines = []
    for group in groups:
        parts = [f"<{proto.name}"]
        if group[0].negated:
            parts.append("match='no'")
        for a in group:
            attr = proto.attr(a.name)
            assert attr is not None
            parts.append(f"{a.name}={quote(format_value(attr.type, a.value))}")
        lines.append("    " + " ".join(parts) + "/>")
    return lines


def write_filterref(ref: FilterRef, indent: str) -> list[str]:
    if not ref.params:
        return [f"{indent}<filterref filter={quote(ref.filter)}/>"]
    lines = [f"{indent}<filterref filter={quote(ref.filter)}>"]
    for name, values in ref.params:
        lines.extend(f"{indent}  <parameter name={quote(name)} value={quote(v)}/>" for v in values)
    lines.append(f"{indent}</filterref>")
    return lines


__all__ = ["Num", "parse_filter", "parse_parameters", "text_escape", "write_filter", "write_filterref"]
