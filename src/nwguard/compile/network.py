"""The firewall of a virtual network, compiled to nwguard's own nftables objects (pure).

One ``inet`` table per running network, named after its bridge (:func:`table_name`), so
starting is one transaction that (re)creates the table and stopping is one ``delete table``.
The table mirrors libvirt's layout (spec §3/§5) in the order libvirt's chains evaluate::

    input     hook input        DHCP/DNS (and DHCPv6) from the bridge to the host
    output    hook output       DHCP/DNS replies from the host to the bridge
    forward   hook forward      jump guest_cross, guest_input, guest_output
    guest_cross / guest_input / guest_output   (libvirt's FWX / FWI / FWO)
    guest_nat hook postrouting  masquerade / SNAT (nat mode only)

Bridges are matched by name (``iifname``/``oifname``) so the rules can exist before the bridge.
An ``open`` network gets no table at all.

>>> from nwguard.xmlio.network_xml import parse_network
>>> net = parse_network("<network><name>n</name><bridge name='br9'/>"
...                     "<ip address='10.9.0.1' prefix='24'/></network>")
>>> b = network_batch(net)
>>> b.commands[0].obj.name
'nwguard_net_br9'
"""

from __future__ import annotations

from ipaddress import ip_network

from nwguard.ir.nodes import (
    AnonSet,
    Batch,
    Chain,
    Counter,
    Ct,
    Masquerade,
    Match,
    Meta,
    Payload,
    Prefix,
    Range,
    Reject,
    Rule,
    Snat,
    Stmt,
    Table,
    Verdict,
)
from nwguard.model.network import IPConfig, Network

FAMILY = "inet"
TABLE_PREFIX = "nwguard_net_"
NAT_PRIORITY = 100
GUEST_CHAINS = ("guest_cross", "guest_input", "guest_output")


def table_name(bridge: str) -> str:
    """The nftables table of the network whose bridge is ``bridge``.

    >>> table_name("virbr0")
    'nwguard_net_virbr0'
    """
    return TABLE_PREFIX + bridge


def has_firewall(net: Network) -> bool:
    """Whether nwguard installs rules for ``net`` (every mode but ``open``)."""
    return net.mode != "open"


def forwarding_sysctls(net: Network) -> tuple[str, ...]:
    """The ``/proc/sys`` keys that must be 1 for ``net`` to forward (libvirt's choice).

    >>> from nwguard.model.network import Forward
    >>> forwarding_sysctls(Network("n", forward=Forward("route")))
    ('net/ipv4/ip_forward',)
    """
    if net.mode == "isolated":
        return ()
    keys = ["net/ipv4/ip_forward"]
    if net.ips_of("ipv6"):
        keys.append("net/ipv6/conf/all/forwarding")
    return tuple(keys)


def teardown_batch(table: str) -> Batch:
    """Remove a network's table; succeeds whether or not the table exists."""
    batch = Batch()
    batch.add(Table(FAMILY, table))
    batch.delete(Table(FAMILY, table))
    return batch


def network_batch(net: Network) -> Batch:
    """The one transaction that installs ``net``'s firewall, replacing any leftover table.

    Empty for an ``open`` network. Deterministic: the same network gives the same batch.
    """
    batch = Batch()
    if not has_firewall(net):
        return batch
    t = _T(net)
    batch.extend(teardown_batch(t.table))
    batch.add(Table(FAMILY, t.table, f"nwguard virtual network {net.name}"))
    for chain in t.chains():
        batch.add(chain)
    for rule in t.rules():
        batch.add(rule)
    return batch


# ----------------------------------------------------------------------------- matches


def _ifname(key: str, name: str) -> Match:
    return Match(Meta(key), name)


def _nfproto(family: str) -> Match:
    return Match(Meta("nfproto"), family)


def _port(proto: str, port: int) -> Match:
    return Match(Payload(proto, "dport"), port)


def _addr(ip: IPConfig, field: str, op: str = "==") -> Match:
    net = ip.network
    return Match(
        Payload("ip6" if ip.is_v6 else "ip", field),
        Prefix(str(net.network_address), net.prefixlen),
        op,
    )


def _accept() -> tuple[Stmt, ...]:
    return (Counter(), Verdict("accept"))


class _T:
    """Builds the chains and rules of one network's table."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.br = net.bridge_name
        self.table = table_name(self.br)
        self.dev = net.forward.dev if net.forward else None

    def rule(self, chain: str, *stmts: Stmt) -> Rule:
        return Rule(FAMILY, self.table, chain, stmts)

    def chains(self) -> list[Chain]:
        t = self.table
        out = [
            Chain(FAMILY, t, "input", "filter", "input", 0, "accept"),
            Chain(FAMILY, t, "output", "filter", "output", 0, "accept"),
            Chain(FAMILY, t, "forward", "filter", "forward", 0, "accept"),
        ]
        out += [Chain(FAMILY, t, name) for name in GUEST_CHAINS]
        if self.nat_ips():
            out.append(Chain(FAMILY, t, "guest_nat", "nat", "postrouting", NAT_PRIORITY, "accept"))
        return out

    def families(self) -> tuple[str, ...]:
        """IPv4 general rules always; IPv6 ones with an IPv6 address or ``ipv6='yes'``."""
        return ("ipv4", "ipv6") if self.net.has_ipv6 else ("ipv4",)

    def rules(self) -> list[Rule]:
        out = [self.rule("forward", Counter(), Verdict("jump", c)) for c in GUEST_CHAINS]
        out += self.host_rules()
        out += self.cross_rules()
        out += self.input_rules()
        out += self.output_rules()
        out += self.nat_rules()
        return out

    # --------------------------------------------------------------- host services

    def host_rules(self) -> list[Rule]:
        """DHCP and DNS (and DHCPv6) between the bridge and the host, only on the bridge."""
        services = [
            ("ipv4", "tcp", 67, 68),
            ("ipv4", "udp", 67, 68),
            ("ipv4", "tcp", 53, 53),
            ("ipv4", "udp", 53, 53),
        ]
        if self.net.ips_of("ipv6"):
            services += [
                ("ipv6", "tcp", 53, 53),
                ("ipv6", "udp", 53, 53),
                ("ipv6", "udp", 547, 546),
            ]
        out = []
        for fam, proto, to_host, to_guest in services:
            out.append(
                self.rule(
                    "input",
                    _ifname("iifname", self.br),
                    _nfproto(fam),
                    _port(proto, to_host),
                    *_accept(),
                )
            )
        for fam, proto, to_host, to_guest in services:
            out.append(
                self.rule(
                    "output",
                    _ifname("oifname", self.br),
                    _nfproto(fam),
                    _port(proto, to_guest),
                    *_accept(),
                )
            )
        return out

    # --------------------------------------------------------------- forwarding

    def cross_rules(self) -> list[Rule]:
        return [
            self.rule(
                "guest_cross",
                _nfproto(f),
                _ifname("iifname", self.br),
                _ifname("oifname", self.br),
                *_accept(),
            )
            for f in self.families()
        ]

    def input_rules(self) -> list[Rule]:
        """guest_input: traffic towards the guests; allowed per address, then rejected."""
        out = []
        for ip in self.routed_ips():
            out.append(
                self.rule(
                    "guest_input",
                    _addr(ip, "daddr"),
                    *self._dev("iifname"),
                    _ifname("oifname", self.br),
                    *_accept(),
                )
            )
        for ip in self.nat_ips():
            out.append(
                self.rule(
                    "guest_input",
                    *self._dev("iifname"),
                    _ifname("oifname", self.br),
                    _addr(ip, "daddr"),
                    Match(Ct("state"), AnonSet(("established", "related")), "in"),
                    *_accept(),
                )
            )
        out += [
            self.rule("guest_input", _nfproto(f), _ifname("oifname", self.br), Counter(), Reject())
            for f in self.families()
        ]
        return out

    def output_rules(self) -> list[Rule]:
        """guest_output: traffic from the guests; allowed from their subnets, then rejected."""
        out = [
            self.rule(
                "guest_output",
                _addr(ip, "saddr"),
                _ifname("iifname", self.br),
                *self._dev("oifname"),
                *_accept(),
            )
            for ip in (*self.routed_ips(), *self.nat_ips())
        ]
        out += [
            self.rule("guest_output", _nfproto(f), _ifname("iifname", self.br), Counter(), Reject())
            for f in self.families()
        ]
        return out

    def _dev(self, key: str) -> tuple[Stmt, ...]:
        return (_ifname(key, self.dev),) if self.dev else ()

    def nat_ips(self) -> tuple[IPConfig, ...]:
        """Addresses whose subnet is masqueraded: IPv4 in nat mode, IPv6 with nat ipv6='yes'."""
        fwd = self.net.forward
        if fwd is None or fwd.mode != "nat":
            return ()
        v6 = bool(fwd.nat and fwd.nat.ipv6)
        return tuple(ip for ip in self.net.ips if not ip.is_v6 or v6)

    def routed_ips(self) -> tuple[IPConfig, ...]:
        """Addresses routed without NAT: all in route mode, unmasqueraded IPv6 in nat mode."""
        if self.net.mode == "route":
            return self.net.ips
        if self.net.mode == "nat":
            nat = set(self.nat_ips())
            return tuple(ip for ip in self.net.ips if ip not in nat)
        return ()

    # --------------------------------------------------------------- nat

    def nat_rules(self) -> list[Rule]:
        """Per masqueraded subnet, in evaluation order: multicast and broadcast RETURN first,
        then tcp and udp with the source port range, then everything else."""
        out: list[Rule] = []
        for ip in self.nat_ips():
            out += self._nat_returns(ip)
            src, not_dst = _addr(ip, "saddr"), _addr(ip, "daddr", "!=")
            dev = self._dev("oifname")
            for proto in ("tcp", "udp"):
                l4 = Match(Meta("l4proto"), proto)
                out.append(
                    self.rule(
                        "guest_nat", l4, src, not_dst, *dev, Counter(), self.nat_stmt(ip, True)
                    )
                )
            out.append(
                self.rule("guest_nat", src, not_dst, *dev, Counter(), self.nat_stmt(ip, False))
            )
        return out

    def _nat_returns(self, ip: IPConfig) -> list[Rule]:
        """Local multicast and limited broadcast are never NATed (libvirt's RETURN rules)."""
        p = "ip6" if ip.is_v6 else "ip"
        m = ip_network("ff02::/16" if ip.is_v6 else "224.0.0.0/24")
        targets: list[Prefix | str] = [Prefix(str(m.network_address), m.prefixlen)]
        if not ip.is_v6:
            targets.append("255.255.255.255")
        return [
            self.rule(
                "guest_nat",
                *self._dev("oifname"),
                _addr(ip, "saddr"),
                Match(Payload(p, "daddr"), t),
                Counter(),
                Verdict("return"),
            )
            for t in targets
        ]

    def nat_stmt(self, ip: IPConfig, with_ports: bool) -> Stmt:
        """MASQUERADE, or SNAT to the configured IPv4 range (only for IPv4 subnets)."""
        fwd = self.net.forward
        nat = fwd.nat if fwd else None
        low, high = nat.ports if nat else (1024, 65535)
        if nat is not None and nat.address_start is not None and not ip.is_v6:
            a, b = str(nat.address_start), str(nat.address_end)
            addr = a if a == b else Range(a, b)
            return Snat(addr, "ip", Range(low, high) if with_ports else None)
        return Masquerade(low, high) if with_ports else Masquerade()
