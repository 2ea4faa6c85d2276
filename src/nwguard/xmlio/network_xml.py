"""libvirt network XML ⇄ :class:`nwguard.model.network.Network`.

Pure: parses the text it is given (safely, see :mod:`nwguard.xmlio.safe`) and writes text.
Every error is an :class:`~nwguard.errors.XMLError` naming the line, the element path, the
attribute, the value given and what is allowed. Unknown elements and attributes are refused:
a setting nwguard would silently ignore is a setting the user believes is in force.

>>> net = parse_network("<network><name>n</name><forward/><ip address='10.0.0.1' prefix='24'/></network>")
>>> net.mode, str(net.ips[0].network)
('nat', '10.0.0.0/24')
>>> parse_network(write_network(net)) == net
True
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, ip_address

from lxml import etree

from nwguard.model.names import IFNAME, NETWORK_NAME, UUID
from nwguard.model.network import (
    FORWARD_MODES,
    Bridge,
    DhcpHost,
    DhcpRange,
    Dns,
    DnsForwarder,
    DnsHost,
    Domain,
    Forward,
    IPAddress,
    IPConfig,
    Lease,
    NatConfig,
    Network,
)
from nwguard.model.values import MAC, BadValue, ValueType
from nwguard.xmlio.common import (
    Ctx,
    Node,
    check_element,
    children,
    only,
    only_checked,
    unicast,
    write_xml,
)
from nwguard.xmlio.safe import parse_document

DUID_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){1,127}")
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME_RE = re.compile(rf"{LABEL}(\.{LABEL})*")
ZONE_RE = re.compile(r"[A-Za-z0-9_-]{1,17}")
LEASE_UNITS = ("seconds", "minutes", "hours")
MIN_LEASE_SECONDS = 120


# ----------------------------------------------------------------------------- parsing helpers


def _yesno(
    ctx: Ctx, el: etree._Element, path: str, attr: str, words: tuple[str, str] = ("yes", "no")
) -> bool | None:
    """A two-word switch (``yes``/``no``, or ``words``): True, False or None if absent."""
    value = el.get(attr)
    if value is None:
        return None
    if value not in words:
        raise ctx.error(el, path, f"invalid value '{value}'; allowed: {', '.join(words)}", attr)
    return value == words[0]


def _int(ctx: Ctx, el: etree._Element, path: str, attr: str, lo: int, hi: int) -> int | None:
    value = el.get(attr)
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value) or not lo <= int(value) <= hi:
        raise ctx.error(
            el, path, f"invalid value '{value}'; allowed: an integer {lo} to {hi}", attr
        )
    return int(value)


def _ip(
    ctx: Ctx, el: etree._Element, path: str, attr: str, family: str | None = None
) -> IPAddress | None:
    value = el.get(attr)
    if value is None:
        return None
    try:
        addr = ip_address(value)
    except ValueError:
        raise ctx.error(el, path, f"invalid IP address '{value}'", attr) from None
    if family is not None and _family(addr) != family:
        want = "an IPv4" if family == "ipv4" else "an IPv6"
        raise ctx.error(el, path, f"'{value}' is not {want} address as the family requires", attr)
    return addr


def _family(addr: IPAddress) -> str:
    return "ipv4" if addr.version == 4 else "ipv6"


def _match(
    ctx: Ctx, el: etree._Element, path: str, attr: str, pattern: re.Pattern[str], allowed: str
) -> str | None:
    value = el.get(attr)
    if value is None:
        return None
    if not pattern.fullmatch(value):
        raise ctx.error(el, path, f"invalid value '{value}'; allowed: {allowed}", attr)
    return value


def _value(ctx: Ctx, el: etree._Element, path: str, attr: str, vtype: ValueType) -> str | None:
    """Attribute ``attr`` as ``vtype`` parses it (a name or address, canonical), or None."""
    value = el.get(attr)
    if value is None:
        return None
    try:
        parsed: str = vtype.parse(value)
    except BadValue as exc:
        raise ctx.error(
            el, path, f"invalid value '{value}'; allowed: {exc.allowed}", attr
        ) from None
    return parsed


def _mac(ctx: Ctx, el: etree._Element, path: str, attr: str) -> str | None:
    mac = _value(ctx, el, path, attr, MAC)
    return unicast(ctx, el, path, attr, mac) if mac is not None else None


def _text(ctx: Ctx, el: etree._Element, path: str) -> str:
    check_element(ctx, el, path, ())
    return (el.text or "").strip()


# ----------------------------------------------------------------------------- the document


def parse_network(data: str | bytes, file: str | None = None) -> Network:
    """Parse and check one ``<network>`` document; raise XMLError naming what is wrong.

    The uuid, bridge name and MAC stay ``None`` when absent: the caller that defines the
    network picks them (see :mod:`nwguard.ops_network`).
    """
    ctx, root = parse_document(data, file, "network")
    path = "/network"
    check_element(ctx, root, path, ("ipv6", "trustGuestRxFilters"), _TOP_ELEMENTS)
    net = Network(
        name=_parse_name(ctx, root, path),
        uuid=_parse_uuid(ctx, root, path),
        forward=_parse_forward(ctx, root, path),
        bridge=_parse_bridge(ctx, root, path),
        mac=_parse_mac(ctx, root, path),
        mtu=_parse_mtu(ctx, root, path),
        domain=_parse_domain(ctx, root, path),
        dns=_parse_dns(ctx, root, path),
        ips=_parse_ips(ctx, root, path),
        ipv6=_yesno(ctx, root, path, "ipv6"),
        trust_guest_rx_filters=_yesno(ctx, root, path, "trustGuestRxFilters"),
    )
    _check_network(ctx, root, net)
    return net


_TOP_ELEMENTS = ("name", "uuid", "forward", "bridge", "mac", "mtu", "domain", "dns", "ip")


def _parse_name(ctx: Ctx, root: etree._Element, path: str) -> str:
    el = only(ctx, root, path, "name")
    if el is None:
        raise ctx.error(root, path, "network has no <name>")
    name = _text(ctx, el, f"{path}/name")
    if not NETWORK_NAME.accepts(name):
        raise ctx.error(
            el, f"{path}/name", f"invalid network name '{name}'; allowed: {NETWORK_NAME.allowed}"
        )
    return name


def _parse_uuid(ctx: Ctx, root: etree._Element, path: str) -> str | None:
    el = only(ctx, root, path, "uuid")
    if el is None:
        return None
    value = _text(ctx, el, f"{path}/uuid")
    try:
        uuid: str = UUID.parse(value)
    except BadValue:
        raise ctx.error(el, f"{path}/uuid", f"invalid UUID '{value}'") from None
    return uuid


def _leaf(
    ctx: Ctx, root: etree._Element, path: str, tag: str, attr: str
) -> tuple[etree._Element, str] | None:
    """The optional ``<tag attr=…/>``: nothing else in it, and ``attr`` required."""
    found = only_checked(ctx, root, path, tag, (attr,))
    if found is not None and found[0].get(attr) is None:
        article = "an" if attr[0] in "aeiou" else "a"
        raise ctx.error(found[0], found[1], f"<{tag}> needs {article} {attr}", attr)
    return found


def _parse_mac(ctx: Ctx, root: etree._Element, path: str) -> str | None:
    found = _leaf(ctx, root, path, "mac", "address")
    return _mac(ctx, *found, "address") if found else None


def _parse_mtu(ctx: Ctx, root: etree._Element, path: str) -> int | None:
    found = _leaf(ctx, root, path, "mtu", "size")
    return _int(ctx, *found, "size", 68, 65535) if found else None


# ----------------------------------------------------------------------------- forward, bridge


def _parse_forward(ctx: Ctx, root: etree._Element, path: str) -> Forward | None:
    found = only_checked(ctx, root, path, "forward", ("mode", "dev"), ("nat", "interface"))
    if found is None:
        return None
    el, p = found
    mode = el.get("mode", "nat")
    if mode not in FORWARD_MODES:
        raise ctx.error(
            el,
            p,
            f"forward mode '{mode}' is not supported; allowed: {', '.join(FORWARD_MODES)} "
            "(or no <forward> for an isolated network)",
            "mode",
        )
    dev = _value(ctx, el, p, "dev", IFNAME)
    dev = _forward_interfaces(ctx, el, p, dev)
    if dev and mode == "open":
        raise ctx.error(el, p, f"dev '{dev}' is not allowed with forward mode 'open'", "dev")
    nat_el = only(ctx, el, p, "nat")
    if nat_el is not None and mode != "nat":
        raise ctx.error(nat_el, f"{p}/nat", f"<nat> is only allowed with mode 'nat', not '{mode}'")
    nat = _parse_nat(ctx, nat_el, f"{p}/nat") if nat_el is not None else None
    return Forward(mode=mode, dev=dev, nat=nat)


def _forward_interfaces(ctx: Ctx, el: etree._Element, path: str, dev: str | None) -> str | None:
    """``<interface dev=…/>`` children: nwguard supports one, equal to ``dev`` if both given."""
    ifaces = [c for c in children(el) if c.tag == "interface"]
    if len(ifaces) > 1:
        raise ctx.error(
            ifaces[1], f"{path}/interface[2]", "only one forward <interface> is supported"
        )
    if not ifaces:
        return dev
    p = f"{path}/interface[1]"
    check_element(ctx, ifaces[0], p, ("dev",))
    idev = _value(ctx, ifaces[0], p, "dev", IFNAME)
    if idev is None:
        raise ctx.error(ifaces[0], p, "<interface> needs a dev", "dev")
    if dev is not None and dev != idev:
        raise ctx.error(ifaces[0], p, f"dev '{idev}' differs from <forward dev='{dev}'>", "dev")
    return idev


def _parse_nat(ctx: Ctx, el: etree._Element, path: str) -> NatConfig:
    check_element(ctx, el, path, ("ipv6",), ("address", "port"))
    a_start = a_end = None
    addr = only(ctx, el, path, "address")
    if addr is not None:
        a_start, a_end = _nat_addresses(ctx, addr, f"{path}/address")
    p_start = p_end = None
    port = only(ctx, el, path, "port")
    if port is not None:
        p_start, p_end = _nat_ports(ctx, port, f"{path}/port")
    return NatConfig(a_start, a_end, p_start, p_end, _yesno(ctx, el, path, "ipv6"))


def _nat_addresses(ctx: Ctx, el: etree._Element, path: str) -> tuple[IPv4Address, IPv4Address]:
    check_element(ctx, el, path, ("start", "end"))
    start = _ip(ctx, el, path, "start", "ipv4")
    end = _ip(ctx, el, path, "end", "ipv4")
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise ctx.error(el, path, "<nat><address> needs both start and end", missing)
    assert isinstance(start, IPv4Address) and isinstance(end, IPv4Address)
    if start > end:
        raise ctx.error(el, path, f"start '{start}' is after end '{end}'", "start")
    return start, end


def _nat_ports(ctx: Ctx, el: etree._Element, path: str) -> tuple[int, int]:
    check_element(ctx, el, path, ("start", "end"))
    start = _int(ctx, el, path, "start", 1, 65535)
    end = _int(ctx, el, path, "end", 1, 65535)
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise ctx.error(el, path, "<nat><port> needs both start and end", missing)
    if start >= end:
        raise ctx.error(
            el, path, f"invalid port range {start}-{end}; start must be below end", "start"
        )
    return start, end


def _parse_bridge(ctx: Ctx, root: etree._Element, path: str) -> Bridge:
    found = only_checked(
        ctx, root, path, "bridge", ("name", "stp", "delay", "zone", "macTableManager")
    )
    if found is None:
        return Bridge()
    el, p = found
    mtm = el.get("macTableManager")
    if mtm not in (None, "kernel"):
        raise ctx.error(
            el, p, f"macTableManager '{mtm}' is not supported; allowed: kernel", "macTableManager"
        )
    return Bridge(
        name=_value(ctx, el, p, "name", IFNAME),
        stp=_yesno(ctx, el, p, "stp", ("on", "off")),
        delay=_int(ctx, el, p, "delay", 0, 30),
        zone=_match(ctx, el, p, "zone", ZONE_RE, "1 to 17 characters of A-Z a-z 0-9 _ -"),
    )


# ----------------------------------------------------------------------------- domain, dns


def _dns_name(ctx: Ctx, el: etree._Element, path: str, attr: str | None, value: str) -> str:
    if len(value) > 253 or not DNS_NAME_RE.fullmatch(value):
        raise ctx.error(
            el,
            path,
            f"invalid DNS name '{value}'; allowed: dot-separated labels of "
            "A-Z a-z 0-9 - (not starting or ending with -)",
            attr,
        )
    return value


def _parse_domain(ctx: Ctx, root: etree._Element, path: str) -> Domain | None:
    found = only_checked(ctx, root, path, "domain", ("name", "localOnly"))
    if found is None:
        return None
    el, p = found
    name = el.get("name")
    if name is None:
        raise ctx.error(el, p, "<domain> needs a name", "name")
    return Domain(_dns_name(ctx, el, p, "name", name), _yesno(ctx, el, p, "localOnly"))


def _parse_dns(ctx: Ctx, root: etree._Element, path: str) -> Dns | None:
    found = only_checked(
        ctx, root, path, "dns", ("enable", "forwardPlainNames"), ("forwarder", "host")
    )
    if found is None:
        return None
    el, p = found
    forwarders: list[DnsForwarder] = []
    hosts: list[DnsHost] = []
    for child in children(el):
        if child.tag == "forwarder":
            cp = f"{p}/forwarder[{len(forwarders) + 1}]"
            forwarders.append(_parse_forwarder(ctx, child, cp))
        else:
            hosts.append(_parse_dns_host(ctx, child, f"{p}/host[{len(hosts) + 1}]"))
    dns = Dns(
        _yesno(ctx, el, p, "enable"),
        _yesno(ctx, el, p, "forwardPlainNames"),
        tuple(forwarders),
        tuple(hosts),
    )
    if not dns.enabled and (forwarders or hosts):
        raise ctx.error(
            el, p, "DNS is disabled (enable='no') but forwarders or hosts are given", "enable"
        )
    return dns


def _parse_forwarder(ctx: Ctx, el: etree._Element, path: str) -> DnsForwarder:
    check_element(ctx, el, path, ("addr", "domain"))
    addr = _ip(ctx, el, path, "addr")
    domain = el.get("domain")
    if domain is not None:
        _dns_name(ctx, el, path, "domain", domain)
    if addr is None and domain is None:
        raise ctx.error(el, path, "<forwarder> needs an addr, a domain or both", "addr")
    return DnsForwarder(addr, domain)


def _parse_dns_host(ctx: Ctx, el: etree._Element, path: str) -> DnsHost:
    check_element(ctx, el, path, ("ip",), ("hostname",))
    ip = _ip(ctx, el, path, "ip")
    if ip is None:
        raise ctx.error(el, path, "<host> needs an ip", "ip")
    names = []
    for i, h in enumerate(c for c in children(el) if c.tag == "hostname"):
        hp = f"{path}/hostname[{i + 1}]"
        names.append(_dns_name(ctx, h, hp, None, _text(ctx, h, hp)))
    if not names:
        raise ctx.error(el, path, "<host> needs at least one <hostname>")
    return DnsHost(ip, tuple(names))


# ----------------------------------------------------------------------------- ip, dhcp


def _parse_ips(ctx: Ctx, root: etree._Element, path: str) -> tuple[IPConfig, ...]:
    ips = [c for c in children(root) if c.tag == "ip"]
    return tuple(_parse_ip(ctx, el, f"{path}/ip[{i + 1}]") for i, el in enumerate(ips))


def _parse_ip(ctx: Ctx, el: etree._Element, path: str) -> IPConfig:
    check_element(ctx, el, path, ("family", "address", "netmask", "prefix", "localPtr"), ("dhcp",))
    family = el.get("family", "ipv4")
    if family not in ("ipv4", "ipv6"):
        raise ctx.error(el, path, f"invalid family '{family}'; allowed: ipv4, ipv6", "family")
    address = _ip(ctx, el, path, "address", family)
    if address is None:
        raise ctx.error(el, path, "<ip> needs an address", "address")
    prefix, netmask_given = _prefix(ctx, el, path, family)
    ip = IPConfig(
        family, address, prefix, netmask_given, local_ptr=_yesno(ctx, el, path, "localPtr")
    )
    _check_host_address(ctx, el, path, ip)
    dhcp = only(ctx, el, path, "dhcp")
    if dhcp is None:
        return ip
    ranges, hosts = _parse_dhcp(ctx, dhcp, f"{path}/dhcp", ip)
    return IPConfig(family, address, prefix, netmask_given, ranges, hosts, True, ip.local_ptr)


def _prefix(ctx: Ctx, el: etree._Element, path: str, family: str) -> tuple[int, bool]:
    netmask, prefix = el.get("netmask"), el.get("prefix")
    if netmask is not None and prefix is not None:
        raise ctx.error(el, path, "give netmask or prefix, not both", "netmask")
    if netmask is not None:
        if family != "ipv4":
            raise ctx.error(el, path, "netmask is only allowed for IPv4; use prefix", "netmask")
        try:
            return IPv4Network(f"0.0.0.0/{netmask}").prefixlen, True
        except ValueError:
            raise ctx.error(
                el,
                path,
                f"invalid netmask '{netmask}'; allowed: a contiguous mask like 255.255.255.0",
                "netmask",
            ) from None
    limit = 32 if family == "ipv4" else 128
    value = _int(ctx, el, path, "prefix", 1, limit)
    if value is None:
        raise ctx.error(el, path, "<ip> needs a netmask or a prefix", "prefix")
    return value, False


def _check_host_address(ctx: Ctx, el: etree._Element, path: str, ip: IPConfig) -> None:
    net = ip.network
    if (
        ip.family == "ipv4"
        and ip.prefix < 31
        and ip.address in (net.network_address, net.broadcast_address)
    ):
        raise ctx.error(
            el,
            path,
            f"address '{ip.address}' is the network or broadcast address of {net}; "
            "allowed: a host address of the subnet",
            "address",
        )


def _parse_dhcp(
    ctx: Ctx, el: etree._Element, path: str, ip: IPConfig
) -> tuple[tuple[DhcpRange, ...], tuple[DhcpHost, ...]]:
    check_element(ctx, el, path, (), ("range", "host"))
    ranges: list[DhcpRange] = []
    hosts: list[DhcpHost] = []
    for child in children(el):
        if child.tag == "range":
            ranges.append(_parse_range(ctx, child, f"{path}/range[{len(ranges) + 1}]", ip))
        else:
            hosts.append(_parse_dhcp_host(ctx, child, f"{path}/host[{len(hosts) + 1}]", ip))
    return tuple(ranges), tuple(hosts)


def _in_subnet(
    ctx: Ctx, el: etree._Element, path: str, attr: str, addr: IPAddress, ip: IPConfig
) -> None:
    net = ip.network
    bad = addr not in net
    if ip.family == "ipv4" and ip.prefix < 31:
        bad = bad or addr in (net.network_address, net.broadcast_address)
    if bad:
        raise ctx.error(
            el, path, f"address '{addr}' is not a host address of the network {net}", attr
        )


def _parse_range(ctx: Ctx, el: etree._Element, path: str, ip: IPConfig) -> DhcpRange:
    check_element(ctx, el, path, ("start", "end"), ("lease",))
    start = _ip(ctx, el, path, "start", ip.family)
    end = _ip(ctx, el, path, "end", ip.family)
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise ctx.error(el, path, "<range> needs both start and end", missing)
    _in_subnet(ctx, el, path, "start", start, ip)
    _in_subnet(ctx, el, path, "end", end, ip)
    if int(start) > int(end):  # one family, as _ip checked
        raise ctx.error(el, path, f"range start '{start}' is after end '{end}'", "start")
    return DhcpRange(start, end, _parse_lease(ctx, el, path))


def _parse_lease(ctx: Ctx, parent: etree._Element, path: str) -> Lease | None:
    found = only_checked(ctx, parent, path, "lease", ("expiry", "unit"))
    if found is None:
        return None
    el, p = found
    expiry = _int(ctx, el, p, "expiry", 0, 4294967295)
    if expiry is None:
        raise ctx.error(el, p, "<lease> needs an expiry", "expiry")
    unit = el.get("unit")
    if unit is not None and unit not in LEASE_UNITS:
        raise ctx.error(el, p, f"invalid unit '{unit}'; allowed: {', '.join(LEASE_UNITS)}", "unit")
    lease = Lease(expiry, unit)
    if 0 < lease.seconds < MIN_LEASE_SECONDS:
        raise ctx.error(
            el,
            p,
            f"lease of {lease.seconds} seconds is too short; allowed: 0 (infinite) or "
            f"at least {MIN_LEASE_SECONDS} seconds",
            "expiry",
        )
    return lease


def _parse_dhcp_host(ctx: Ctx, el: etree._Element, path: str, ip: IPConfig) -> DhcpHost:
    check_element(ctx, el, path, ("mac", "id", "name", "ip"), ("lease",))
    mac = _mac(ctx, el, path, "mac")
    hid = _match(ctx, el, path, "id", DUID_RE, "hex bytes separated by colons, like 00:01:00:01")
    name = el.get("name")
    if name is not None:
        _dns_name(ctx, el, path, "name", name)
    addr = _ip(ctx, el, path, "ip", ip.family)
    if addr is not None:
        _in_subnet(ctx, el, path, "ip", addr, ip)
    if ip.family == "ipv4" and mac is None and name is None:
        raise ctx.error(el, path, "a static IPv4 host needs a mac or a name", "mac")
    if ip.family == "ipv6" and mac is not None:
        raise ctx.error(
            el, path, "mac is not allowed for IPv6 hosts; use id (the DUID) or name", "mac"
        )
    if ip.family == "ipv6" and hid is None and name is None:
        raise ctx.error(el, path, "a static IPv6 host needs an id or a name", "id")
    return DhcpHost(mac, hid.lower() if hid else None, name, addr, _parse_lease(ctx, el, path))


# ----------------------------------------------------------------------------- whole-network checks


def _check_network(ctx: Ctx, root: etree._Element, net: Network) -> None:
    ip_els = [c for c in children(root) if c.tag == "ip"]
    for family in ("ipv4", "ipv6"):
        with_dhcp = [i for i, ip in enumerate(net.ips) if ip.family == family and ip.has_dhcp]
        if len(with_dhcp) > 1:
            i = with_dhcp[1]
            raise ctx.error(
                ip_els[i],
                f"/network/ip[{i + 1}]/dhcp",
                f"DHCP is already served on another {family} address; allowed: one per family",
            )
    for i, a in enumerate(net.ips):
        for j in range(i):
            if a.network.overlaps(net.ips[j].network):
                raise ctx.error(
                    ip_els[i],
                    f"/network/ip[{i + 1}]",
                    f"subnet {a.network} overlaps {net.ips[j].network} of ip[{j + 1}]",
                    "address",
                )


# ----------------------------------------------------------------------------- writing


def write_network(net: Network) -> str:
    """The network as libvirt-style XML (two-space indent, single quotes, final newline)."""
    body = [Node("name", text=net.name)]
    if net.uuid:
        body.append(Node("uuid", text=net.uuid))
    if net.forward:
        body.append(_write_forward(net.forward))
    b = net.bridge
    if b != Bridge():
        stp = None if b.stp is None else ("on" if b.stp else "off")
        body.append(
            Node("bridge", (("name", b.name), ("stp", stp), ("delay", b.delay), ("zone", b.zone)))
        )
    if net.mtu is not None:
        body.append(Node("mtu", (("size", net.mtu),)))
    if net.mac:
        body.append(Node("mac", (("address", net.mac),)))
    if net.domain:
        body.append(
            Node("domain", (("name", net.domain.name), ("localOnly", net.domain.local_only)))
        )
    if net.dns:
        body.append(_write_dns(net.dns))
    body.extend(_write_ip(ip) for ip in net.ips)
    attrs = (("ipv6", net.ipv6), ("trustGuestRxFilters", net.trust_guest_rx_filters))
    return write_xml(Node("network", attrs, tuple(body)))


def _write_forward(fwd: Forward) -> Node:
    body = []
    nat = fwd.nat
    if nat is not None:
        addr = (("start", nat.address_start), ("end", nat.address_end))
        port = (("start", nat.port_start), ("end", nat.port_end))
        nat_body = (
            *([Node("address", addr)] if nat.address_start is not None else []),
            *([Node("port", port)] if nat.port_start is not None else []),
        )
        body.append(Node("nat", (("ipv6", nat.ipv6),), nat_body))
    if fwd.dev:
        body.append(Node("interface", (("dev", fwd.dev),)))
    return Node("forward", (("mode", fwd.mode), ("dev", fwd.dev)), tuple(body))


def _write_dns(dns: Dns) -> Node:
    forwarders = [
        Node("forwarder", (("domain", f.domain), ("addr", f.addr))) for f in dns.forwarders
    ]
    hosts = [
        Node("host", (("ip", h.ip),), tuple(Node("hostname", text=n) for n in h.hostnames))
        for h in dns.hosts
    ]
    attrs = (("enable", dns.enable), ("forwardPlainNames", dns.forward_plain_names))
    return Node("dns", attrs, (*forwarders, *hosts))


def _write_lease(lease: Lease | None) -> tuple[Node, ...]:
    return (
        () if lease is None else (Node("lease", (("expiry", lease.expiry), ("unit", lease.unit))),)
    )


def _write_ip(ip: IPConfig) -> Node:
    family = "ipv6" if ip.is_v6 else None
    mask: tuple[str, object] = (
        ("netmask", ip.network.netmask) if ip.netmask_given else ("prefix", ip.prefix)
    )
    attrs = (("family", family), ("address", ip.address), mask, ("localPtr", ip.local_ptr))
    if not ip.has_dhcp:
        return Node("ip", attrs)
    ranges = [
        Node("range", (("start", r.start), ("end", r.end)), _write_lease(r.lease))
        for r in ip.ranges
    ]
    hosts = [
        Node(
            "host",
            (("mac", h.mac), ("id", h.id), ("name", h.name), ("ip", h.ip)),
            _write_lease(h.lease),
        )
        for h in ip.hosts
    ]
    return Node("ip", attrs, (Node("dhcp", (), (*ranges, *hosts)),))
