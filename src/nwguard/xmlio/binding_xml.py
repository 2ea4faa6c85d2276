"""libvirt ``<filterbinding>`` XML ⇄ :class:`FilterBinding`.

>>> b = parse_binding('''<filterbinding><owner><name>vm</name>
...   <uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner><portdev name='vnet0'/>
...   <mac address='52:54:00:7b:35:93'/><filterref filter='clean-traffic'>
...   <parameter name='IP' value='10.0.0.1'/></filterref></filterbinding>''')
>>> b.portdev, b.params()["IP"]
('vnet0', ('10.0.0.1',))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nwguard.model.binding import FilterBinding
from nwguard.model.names import IFNAME, UUID
from nwguard.model.values import BadValue
from nwguard.xmlio.common import Ctx, Node, children, guest_mac, write_xml
from nwguard.xmlio.filter_xml import filterref_node, parse_filterref
from nwguard.xmlio.plain import parse_document

if TYPE_CHECKING:  # lxml parses only what xmlio.plain does not take (start-up)
    from lxml import etree

_CHILDREN = ("owner", "portdev", "linkdev", "mac", "filterref", "backend")


def parse_binding(data: str | bytes, file: str | None = None) -> FilterBinding:
    ctx, root = parse_document(data, file, "filterbinding")
    path = "/filterbinding"
    found: dict[str, etree._Element] = {}
    for el in children(root):
        if el.tag not in _CHILDREN:
            raise ctx.error(
                el,
                f"{path}/{el.tag}",
                f"unknown element <{el.tag}>; allowed: {', '.join(_CHILDREN)}",
            )
        found[el.tag] = el
    owner = found.get("owner")
    if owner is None:
        raise ctx.error(root, path, "filter binding has no owner")
    owner_name, owner_uuid = _owner(ctx, owner, f"{path}/owner")
    portdev = _ifname(ctx, found.get("portdev"), f"{path}/portdev", root, "port dev")
    linkdev = (
        _ifname(ctx, found["linkdev"], f"{path}/linkdev", root, "link dev")
        if "linkdev" in found
        else None
    )
    mac_el = found.get("mac")
    if mac_el is None or mac_el.get("address") is None:
        raise ctx.error(
            mac_el if mac_el is not None else root,
            f"{path}/mac",
            "filter binding has no MAC address",
            "address",
        )
    mac = guest_mac(ctx, mac_el, f"{path}/mac")
    ref_el = found.get("filterref")
    if ref_el is None:
        raise ctx.error(root, path, "filter binding has no filter reference")
    ref = parse_filterref(ctx, ref_el, f"{path}/filterref")
    return FilterBinding(owner_name, owner_uuid, portdev, mac, ref, linkdev)


def _owner(ctx: Ctx, owner: etree._Element, path: str) -> tuple[str, str]:
    name_el, uuid_el = owner.find("name"), owner.find("uuid")
    name = (name_el.text or "").strip() if name_el is not None else ""
    if not name:
        raise ctx.error(owner, path, "filter binding has no owner name")
    if uuid_el is None:
        raise ctx.error(owner, path, "filter binding has no owner UUID")
    try:
        uuid: str = UUID.parse(uuid_el.text or "")
    except BadValue:
        raise ctx.error(uuid_el, f"{path}/uuid", f"malformed uuid '{uuid_el.text}'") from None
    return name, uuid


def _ifname(ctx: Ctx, el: etree._Element | None, path: str, root: etree._Element, what: str) -> str:
    name = el.get("name") if el is not None else None
    if el is None or name is None:
        raise ctx.error(
            el if el is not None else root, path, f"filter binding has no {what} name", "name"
        )
    if not IFNAME.accepts(name):
        raise ctx.error(
            el, path, f"invalid interface name '{name}'; allowed: {IFNAME.allowed}", "name"
        )
    return name


def write_binding(b: FilterBinding) -> str:
    owner = Node("owner", (), (Node("name", text=b.owner_name), Node("uuid", text=b.owner_uuid)))
    body = [owner, Node("portdev", (("name", b.portdev),))]
    if b.linkdev:
        body.append(Node("linkdev", (("name", b.linkdev),)))
    body += [Node("mac", (("address", b.mac),)), filterref_node(b.filterref)]
    return write_xml(Node("filterbinding", (), tuple(body)))
