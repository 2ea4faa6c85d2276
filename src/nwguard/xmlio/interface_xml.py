"""libvirt's domain ``<interface>`` element ⇄ :class:`Interface`.

Only what nwguard acts on is read (type, mac, source, target, ip, filterref); the elements a
hypervisor uses (model, driver, address, alias, boot, link, ...) are accepted and ignored, so a
libvirt user's XML works unchanged.

>>> i = parse_interface('''<interface type='bridge'><mac address='52:54:00:56:44:32'/>
...   <source bridge='br1'/><ip address='10.33.8.131'/><target dev='vnet0'/>
...   <model type='virtio'/><filterref filter='clean-traffic'/></interface>''')
>>> i.source_bridge, i.target_dev, i.ips, i.filterref.filter
('br1', 'vnet0', (('10.33.8.131', None),), 'clean-traffic')
"""

from __future__ import annotations

import ipaddress

from lxml import etree

from nwguard.model.filter import FilterRef
from nwguard.model.interface import Interface
from nwguard.model.names import IFNAME
from nwguard.xmlio.common import Ctx, Node, children, guest_mac, write_xml
from nwguard.xmlio.filter_xml import filterref_node, parse_filterref
from nwguard.xmlio.safe import parse_document

TYPES = ("bridge", "network", "ethernet")


def parse_interface(data: str | bytes, file: str | None = None) -> Interface:
    ctx, root = parse_document(data, file, "interface")
    path = "/interface"
    itype = root.get("type")
    if itype not in TYPES:
        raise ctx.error(
            root, path, f"unsupported interface type '{itype}'; allowed: {', '.join(TYPES)}", "type"
        )
    mac = source_bridge = source_network = target = None
    ips: list[tuple[str, int | None]] = []
    ref: FilterRef | None = None
    for el in children(root):
        epath = f"{path}/{el.tag}"
        if el.tag == "mac":
            mac = guest_mac(ctx, el, epath)
        elif el.tag == "source":
            source_bridge, source_network = el.get("bridge"), el.get("network")
        elif el.tag == "target":
            target = _dev(ctx, el, epath)
        elif el.tag == "ip":
            ips.append(_ip(ctx, el, f"{path}/ip[{len(ips) + 1}]"))
        elif el.tag == "filterref":
            ref = parse_filterref(ctx, el, epath)
    if itype == "bridge" and not source_bridge:
        raise ctx.error(
            root,
            f"{path}/source",
            "an interface of type 'bridge' needs <source bridge='...'/>",
            "bridge",
        )
    if itype == "network" and not source_network:
        raise ctx.error(
            root,
            f"{path}/source",
            "an interface of type 'network' needs <source network='...'/>",
            "network",
        )
    if source_bridge and not IFNAME.accepts(source_bridge):
        raise ctx.error(
            root,
            f"{path}/source",
            f"invalid bridge name '{source_bridge}'; allowed: {IFNAME.allowed}",
            "bridge",
        )
    return Interface(itype, mac, source_bridge, source_network, target, tuple(ips), ref)


def _dev(ctx: Ctx, el: etree._Element, path: str) -> str:
    dev = el.get("dev")
    if dev is None or not IFNAME.accepts(dev):
        raise ctx.error(el, path, f"invalid target dev '{dev}'; allowed: {IFNAME.allowed}", "dev")
    return dev


def _ip(ctx: Ctx, el: etree._Element, path: str) -> tuple[str, int | None]:
    text = el.get("address", "")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ctx.error(
            el, path, f"illegal value '{text}'; expected an IPv4 or IPv6 address", "address"
        ) from None
    prefix = el.get("prefix")
    width = 32 if addr.version == 4 else 128
    if prefix is not None and (not prefix.isdigit() or int(prefix) > width):
        raise ctx.error(
            el, path, f"illegal value '{prefix}'; expected a prefix length 0-{width}", "prefix"
        )
    return str(addr), int(prefix) if prefix is not None else None


def write_interface(i: Interface) -> str:
    body: list[Node] = []
    if i.mac:
        body.append(Node("mac", (("address", i.mac),)))
    if i.source_bridge:
        body.append(Node("source", (("bridge", i.source_bridge),)))
    if i.source_network:
        body.append(Node("source", (("network", i.source_network),)))
    body += [Node("ip", (("address", addr), ("prefix", prefix))) for addr, prefix in i.ips]
    if i.target_dev:
        body.append(Node("target", (("dev", i.target_dev),)))
    if i.filterref:
        body.append(filterref_node(i.filterref))
    return write_xml(Node("interface", (("type", i.type),), tuple(body)))
