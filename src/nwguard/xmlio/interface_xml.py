"""libvirt ``<interface>`` XML ⇄ :class:`nwguard.model.interface.Interface` (pure).

Types ``network`` and ``bridge``; ``mac``, ``source``, ``target``, ``ip``, ``model`` and
``filterref`` with parameters. Other elements are refused rather than ignored.

>>> i = parse_interface("<interface type='bridge'><source bridge='br0'/>"
...                     "<filterref filter='clean-traffic'/></interface>")
>>> i.source, i.filterref.filter
('br0', 'clean-traffic')
>>> parse_interface(write_interface(i)) == i
True
"""

from __future__ import annotations

import re

from lxml import etree

from ..model.filter import FilterRef
from ..model.interface import INTERFACE_TYPES, Interface, InterfaceIP
from .filter_xml import NAME_ALLOWED as FILTER_NAME_ALLOWED
from .filter_xml import NAME_RE as FILTER_NAME_RE
from .filter_xml import parse_parameters, write_filterref
from .network_xml import (
    IFNAME_ALLOWED,
    IFNAME_RE,
    NAME_ALLOWED,
    NAME_RE,
    _check_attrs,
    _check_children,
    _Ctx,
    _int,
    _ip,
    _mac,
    _match,
    _only,
    _yesno,
)
from .safe import children, parse_xml, quote

MODEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_CHILDREN = ("mac", "source", "target", "ip", "model", "filterref")


def parse_interface(data: str | bytes, file: str | None = None) -> Interface:
    """Parse and check one ``<interface>``; raise XMLError naming what is wrong."""
    root = parse_xml(data, file)
    ctx = _Ctx(file)
    path = "/interface"
    if root.tag != "interface":
        raise ctx.error(
            root, f"/{root.tag}", f"unknown root element <{root.tag}>; expected <interface>"
        )
    _check_attrs(ctx, root, path, ("type",))
    _check_children(ctx, root, path, _CHILDREN)
    kind = root.get("type")
    if kind not in INTERFACE_TYPES:
        raise ctx.error(
            root,
            path,
            f"interface type '{kind}' is not supported; allowed: {', '.join(INTERFACE_TYPES)}",
            "type",
        )
    source, portgroup = _parse_source(ctx, root, path, kind)
    target, managed = _parse_target(ctx, root, path)
    return Interface(
        type=kind,
        source=source,
        mac=_parse_mac(ctx, root, path),
        target=target,
        managed=managed,
        ips=_parse_ips(ctx, root, path),
        model=_parse_model(ctx, root, path),
        portgroup=portgroup,
        filterref=_parse_filterref(ctx, root, path),
    )


def _parse_source(ctx: _Ctx, root: etree._Element, path: str, kind: str) -> tuple[str, str | None]:
    el = _only(ctx, root, path, "source")
    if el is None:
        raise ctx.error(root, path, f"an interface of type '{kind}' needs a <source {kind}='…'/>")
    p = f"{path}/source"
    _check_children(ctx, el, p, ())
    if kind == "network":
        _check_attrs(ctx, el, p, ("network", "portgroup"))
        value = _match(ctx, el, p, "network", NAME_RE, NAME_ALLOWED)
        portgroup = _match(ctx, el, p, "portgroup", NAME_RE, NAME_ALLOWED)
    else:
        _check_attrs(ctx, el, p, ("bridge",))
        value = _match(ctx, el, p, "bridge", IFNAME_RE, IFNAME_ALLOWED)
        portgroup = None
    if value is None:
        raise ctx.error(el, p, f"<source> needs a {kind}", kind)
    return value, portgroup


def _parse_target(ctx: _Ctx, root: etree._Element, path: str) -> tuple[str | None, bool | None]:
    el = _only(ctx, root, path, "target")
    if el is None:
        return None, None
    p = f"{path}/target"
    _check_attrs(ctx, el, p, ("dev", "managed"))
    _check_children(ctx, el, p, ())
    dev = _match(ctx, el, p, "dev", IFNAME_RE, IFNAME_ALLOWED)
    if dev is None:
        raise ctx.error(el, p, "<target> needs a dev", "dev")
    return dev, _yesno(ctx, el, p, "managed")


def _parse_mac(ctx: _Ctx, root: etree._Element, path: str) -> str | None:
    el = _only(ctx, root, path, "mac")
    if el is None:
        return None
    p = f"{path}/mac"
    _check_attrs(ctx, el, p, ("address",))
    _check_children(ctx, el, p, ())
    mac = _mac(ctx, el, p, "address")
    if mac is None:
        raise ctx.error(el, p, "<mac> needs an address", "address")
    return mac


def _parse_ips(ctx: _Ctx, root: etree._Element, path: str) -> tuple[InterfaceIP, ...]:
    out = []
    for i, el in enumerate((c for c in children(root) if c.tag == "ip"), 1):
        p = f"{path}/ip[{i}]"
        _check_attrs(ctx, el, p, ("address", "prefix", "peer", "family"))
        _check_children(ctx, el, p, ())
        family = el.get("family")
        if family not in (None, "ipv4", "ipv6"):
            raise ctx.error(el, p, f"invalid family '{family}'; allowed: ipv4, ipv6", "family")
        addr = _ip(ctx, el, p, "address", family)
        if addr is None:
            raise ctx.error(el, p, "<ip> needs an address", "address")
        prefix = _int(ctx, el, p, "prefix", 0, 32 if addr.version == 4 else 128)
        peer = _ip(ctx, el, p, "peer", "ipv4" if addr.version == 4 else "ipv6")
        out.append(InterfaceIP(addr, prefix, peer))
    return tuple(out)


def _parse_model(ctx: _Ctx, root: etree._Element, path: str) -> str | None:
    el = _only(ctx, root, path, "model")
    if el is None:
        return None
    p = f"{path}/model"
    _check_attrs(ctx, el, p, ("type",))
    _check_children(ctx, el, p, ())
    model = _match(ctx, el, p, "type", MODEL_RE, "a model name like virtio")
    if model is None:
        raise ctx.error(el, p, "<model> needs a type", "type")
    return model


def _parse_filterref(ctx: _Ctx, root: etree._Element, path: str) -> FilterRef | None:
    el = _only(ctx, root, path, "filterref")
    if el is None:
        return None
    p = f"{path}/filterref"
    _check_attrs(ctx, el, p, ("filter",))
    name = el.get("filter")
    if name is None:
        raise ctx.error(el, p, "filterref has no filter attribute", "filter")
    if not FILTER_NAME_RE.fullmatch(name):
        raise ctx.error(
            el, p, f"invalid filter name '{name}'; allowed: {FILTER_NAME_ALLOWED}", "filter"
        )
    return FilterRef(name, parse_parameters(ctx, el, p))  # type: ignore[arg-type]


def write_interface(iface: Interface) -> str:
    """The interface as libvirt-style XML (two-space indent, single quotes, final newline)."""
    lines = [f"<interface type={quote(iface.type)}>"]
    if iface.mac:
        lines.append(f"  <mac address={quote(iface.mac)}/>")
    pg = f" portgroup={quote(iface.portgroup)}" if iface.portgroup else ""
    lines.append(f"  <source {iface.type}={quote(iface.source)}{pg}/>")
    for ip in iface.ips:
        extra = "" if ip.prefix is None else f" prefix={quote(str(ip.prefix))}"
        extra += "" if ip.peer is None else f" peer={quote(str(ip.peer))}"
        lines.append(f"  <ip address={quote(str(ip.address))}{extra}/>")
    if iface.target:
        managed = (
            "" if iface.managed is None else f" managed={quote('yes' if iface.managed else 'no')}"
        )
        lines.append(f"  <target dev={quote(iface.target)}{managed}/>")
    if iface.model:
        lines.append(f"  <model type={quote(iface.model)}/>")
    if iface.filterref:
        lines.extend(write_filterref(iface.filterref, "  "))
    lines.append("</interface>")
    return "\n".join(lines) + "\n"
