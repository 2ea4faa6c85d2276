"""libvirt ``<filterbinding>`` XML ⇄ :class:`FilterBinding`.

>>> b = parse_binding('''<filterbinding><owner><name>vm</name>
...   <uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner><portdev name='vnet0'/>
...   <mac address='52:54:00:7b:35:93'/><filterref filter='clean-traffic'>
...   <parameter name='IP' value='10.0.0.1'/></filterref></filterbinding>''')
>>> b.portdev, b.params()["IP"]
('vnet0', ('10.0.0.1',))
"""

from __future__ import annotations

import re
import uuid as uuidlib

from lxml import etree

from nwguard.errors import XMLError
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import FilterRef
from nwguard.model.values import MAC, BadValue
from nwguard.xmlio.filter_xml import NAME_ALLOWED, NAME_RE, _Ctx, parse_parameters, write_filterref
from nwguard.xmlio.safe import children, parse_xml, quote, text_escape

IFNAME_RE = re.compile(r"[A-Za-z0-9_.:@+-]{1,15}")
IFNAME_ALLOWED = "1 to 15 characters of A-Z a-z 0-9 _ . : @ + -"
_CHILDREN = ("owner", "portdev", "linkdev", "mac", "filterref", "backend")


def parse_binding(data: str | bytes, file: str | None = None) -> FilterBinding:
    root = parse_xml(data, file)
    ctx = _Ctx(file)
    path = "/filterbinding"
    if root.tag != "filterbinding":
        raise ctx.error(root, f"/{root.tag}", f"unknown root element <{root.tag}>; expected <filterbinding>")
    found: dict[str, etree._Element] = {}
    for el in children(root):
        if el.tag not in _CHILDREN:
            raise ctx.error(el, f"{path}/{el.tag}", f"unknown element <{el.tag}>; allowed: {', '.join(_CHILDREN)}")
        found[el.tag] = el
    owner = found.get("owner")
    if owner is None:
        raise XMLError("filter binding has no owner", file=file, line=root.sourceline, path=path)
    name_el, uuid_el = owner.find("name"), owner.find("uuid")
    if name_el is None or not (name_el.text or "").strip():
        raise ctx.error(owner, f"{path}/owner", "filter binding has no owner name")
    if uuid_el is None:
        raise ctx.error(owner, f"{path}/owner", "filter binding has no owner UUID")
    try:
        owner_uuid = str(uuidlib.UUID((uuid_el.text or "").strip()))
    except ValueError:
        raise ctx.error(uuid_el, f"{path}/owner/uuid", f"malformed uuid '{uuid_el.text}'") from None
    portdev = _ifname(ctx, found.get("portdev"), f"{path}/portdev", root, "port dev")
    linkdev = _ifname(ctx, found["linkdev"], f"{path}/linkdev", root, "link dev") if "linkdev" in found else None
    mac = _mac(ctx, found.get("mac"), f"{path}/mac", root)
    ref_el = found.get("filterref")
    if ref_el is None:
        raise XMLError("filter binding has no filter reference", file=file, line=root.sourceline, path=path)
    target = ref_el.get("filter")
    if target is None or not NAME_RE.fullmatch(target):
        raise ctx.error(ref_el, f"{path}/filterref", f"invalid filter '{target}'; allowed: {NAME_ALLOWED}", "filter")
    params = parse_parameters(ctx, ref_el, f"{path}/filterref")
    return FilterBinding(name_el.text.strip(), owner_uuid, portdev, mac, FilterRef(target, params), linkdev)


def _ifname(ctx: _Ctx, el: etree._Element | None, path: str, root: etree._Element, what: str) -> str:
    if el is None or el.get("name") is None:
        raise ctx.error(el if el is not None else root, path, f"filter binding has no {what} name", "name")
    name = el.get("name")
    if not IFNAME_RE.fullmatch(name):
        raise ctx.error(el, path, f"invalid interface name '{name}'; allowed: {IFNAME_ALLOWED}", "name")
    return name


def _mac(ctx: _Ctx, el: etree._Element | None, path: str, root: etree._Element) -> str:
    if el is None or el.get("address") is None:
        raise ctx.error(el if el is not None else root, path, "filter binding has no MAC address", "address")
    try:
        mac = MAC.parse(el.get("address"))
    except BadValue as exc:
        raise ctx.error(el, path, f"illegal value '{el.get('address')}'; expected {exc.allowed}", "address") from None
    if int(mac.split(":")[0], 16) & 1:
        raise ctx.error(el, path, f"MAC address '{mac}' is multicast; a guest's MAC must be unicast", "address")
    return mac


def write_binding(b: FilterBinding) -> str:
    lines = [
        "<filterbinding>",
        "  <owner>",
        f"    <name>{text_escape(b.owner_name)}</name>",
        f"    <uuid>{b.owner_uuid}</uuid>",
        "  </owner>",
        f"  <portdev name={quote(b.portdev)}/>",
    ]
    if b.linkdev:
        lines.append(f"  <linkdev name={quote(b.linkdev)}/>")
    lines.append(f"  <mac address={quote(b.mac)}/>")
    lines += write_filterref(b.filterref, "  ")
    lines.append("</filterbinding>")
    return "\n".join(lines) + "\n"
