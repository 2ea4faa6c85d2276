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
from nwguard.model.values import MAC, BadValue
from nwguard.xmlio.binding_xml import IFNAME_ALLOWED, IFNAME_RE
from nwguard.xmlio.filter_xml import NAME_ALLOWED, NAME_RE, _Ctx, parse_parameters, write_filterref
from nwguard.xmlio.safe import children, parse_xml, quote

TYPES = ("bridge", "network", "ethernet")


def parse_interface(data: str | bytes, file: str | None = None) -> Interface:
    root = parse_xml(data, file)
    ctx = _Ctx(file)
    path = "/interface"
    if root.tag != "interface":
        raise ctx.error(root, f"/{root.tag}", f"unknown root element <{root.tag}>; expected <interface>")
    itype = root.get("type")
    if itype not in TYPES:
        raise ctx.error(root, path, f"unsupported interface type '{itype}'; allowed: {', '.join(TYPES)}", "type")
    mac = source_bridge = source_network = target = None
    ips: list[tuple[str, int | None]] = []
    ref = None
    for el in children(root):
        epath = f"{path}/{el.tag}"
        if el.tag == "mac":
            mac = _mac(ctx, el, epath)
        elif el.tag == "source":
            source_bridge, source_network = el.get("bridge"), el.get("network")
        elif el.tag == "target":
            target = _dev(ctx, el, epath)
        elif el.tag == "ip":
            ips.append(_ip(ctx, el, f"{path}/ip[{len(ips) + 1}]"))
        elif el.tag == "filterref":
            ref = _filterref(ctx, el, epath)
    if itype == "bridge" and not source_bridge:
        raise ctx.error(root, f"{path}/source", "an interface of type 'bridge' needs <source bridge='...'/>", "bridge")
    if itype == "network" and not source_network:
        raise ctx.error(root, f"{path}/source", "an interface of type 'network' needs <source network='...'/>", "network")
    if source_bridge and not IFNAME_RE.fullmatch(source_bridge):
        raise ctx.error(root, f"{path}/source", f"invalid bridge name '{source_bridge}'; allowed: {IFNAME_ALLOWED}", "bridge")
    return Interface(itype, mac, source_bridge, source_network, target, tuple(ips), ref)


def _mac(ctx: _Ctx, el: etree._Element, path: str) -> str:
    text = el.get("address", "")
    try:
        mac = MAC.parse(text)
    except BadValue as exc:
        raise ctx.error(el, path, f"illegal value '{text}'; expected {exc.allowed}", "address") from None
    if int(mac[:2], 16) & 1:
        raise ctx.error(el, path, f"MAC address '{mac}' is multicast; a guest's MAC must be unicast", "address")
    return mac


def _dev(ctx: _Ctx, el: etree._Element, path: str) -> str:
    dev = el.get("dev")
    if dev is None or not IFNAME_RE.fullmatch(dev):
        raise ctx.error(el, path, f"invalid target dev '{dev}'; allowed: {IFNAME_ALLOWED}", "dev")
    return dev


def _ip(ctx: _Ctx, el: etree._Element, path: str) -> tuple[str, int | None]:
    text = el.get("address", "")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ctx.error(el, path, f"illegal value '{text}'; expected an IPv4 or IPv6 address", "address") from None
    prefix = el.get("prefix")
    width = 32 if addr.version == 4 else 128
    if prefix is not None and (not prefix.isdigit() or int(prefix) > width):
        raise ctx.error(el, path, f"illegal value '{prefix}'; expected a prefix length 0-{width}", "prefix")
    return str(addr), int(prefix) if prefix is not None else None


def _filterref(ctx: _Ctx, el: etree._Element, path: str) -> FilterRef:
    target = el.get("filter")
    if target is None or not NAME_RE.fullmatch(target):
        raise ctx.error(el, path, f"invalid filter '{target}'; allowed: {NAME_ALLOWED}", "filter")
    return FilterRef(target, parse_parameters(ctx, el, path))


def write_interface(i: Interface) -> str:
    lines = [f"<interface type={quote(i.type)}>"]
    if i.mac:
        lines.append(f"  <mac address={quote(i.mac)}/>")
    if i.source_bridge:
        lines.append(f"  <source bridge={quote(i.source_bridge)}/>")
    if i.source_network:
        lines.append(f"  <source network={quote(i.source_network)}/>")
    for addr, prefix in i.ips:
        extra = f" prefix={quote(str(prefix))}" if prefix is not None else ""
        lines.append(f"  <ip address={quote(addr)}{extra}/>")
    if i.target_dev:
        lines.append(f"  <target dev={quote(i.target_dev)}/>")
    if i.filterref:
        lines += write_filterref(i.filterref, "  ")
    lines.append("</interface>")
    return "\n".join(lines) + "\n"
