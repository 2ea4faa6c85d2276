"""The port IR in libvirt's own ebtables / iptables / ip6tables layout (pure).

One port renders to its ebtables ``nat`` chains (``libvirt-I-<port>``, ``I-<port>-<chain>``,
...) and its iptables / ip6tables ``filter`` chains (``FI-``, ``FO-``, ``HI-<port>``), plus the
rules that hook them in (``PREROUTING -i <port> -j libvirt-I-<port>``, the physdev gotos of
``libvirt-in`` ...). ebtables has no sets: a slot lookup becomes one rule per element of the
port (a negated lookup, which has one element, one rule with ``!``). Nothing here decides
policy: every rule is one IR rule, spelled (ebiptables-layout.md §2-§4).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator, Mapping, Sequence

from nwguard.compile.matches import _RARP_FIELDS, _STP_FIELDS
from nwguard.errors import CompileError
from nwguard.ir.nodes import (
    ConnLimit,
    CtState,
    IpSetMatch,
    Masked,
    Match,
    Meta,
    Payload,
    Prefix,
    Range,
    RawPayload,
    Stmt,
    TcpOption,
    Value,
    Verdict,
)
from nwguard.ir.ports import FilterRule, Lookup
from nwguard.model.protocols import STP_GROUP_MAC
from nwguard.model.values import ETHERTYPE_NAMES, IP_PROTOCOL_NAMES, TCP_FLAG_BITS
from nwguard.records import ValueRecord

MAX_CHAIN = 31  # kernel chain names: 32 bytes with the NUL; libvirt snprintf()s into them
ETH_IP, ETH_IP6 = ETHERTYPE_NAMES["ipv4"], ETHERTYPE_NAMES["ipv6"]
_PROTO_NAME = {n: name for name, n in IP_PROTOCOL_NAMES.items()}
_PROTO_NAME[58] = "icmpv6"

# shared iptables chains and where they hook in (libvirt: FORWARD 1-3, INPUT 1)
HOOK_CHAINS = (
    ("FORWARD", "libvirt-in"),
    ("FORWARD", "libvirt-out"),
    ("FORWARD", "libvirt-in-post"),
    ("INPUT", "libvirt-host-in"),
)


def eb_root(port: str, out_side: bool) -> str:
    return f"libvirt-{'I' if out_side else 'O'}-{port}"[:MAX_CHAIN]


def eb_sub(port: str, out_side: bool, chain: str) -> str:
    return f"{'I' if out_side else 'O'}-{port}-{chain}"[:MAX_CHAIN]


class PortRules(ValueRecord):
    """One port in libvirt's layout: chains (name, rules) in creation order, per table.

    ``eb`` is ebtables ``nat``; ``ip4`` / ``ip6`` iptables / ip6tables ``filter`` (empty when
    the port has no L4 rule of that family). A rule is its option text after ``-A <chain>``.
    """

    port: str
    eb: tuple[tuple[str, tuple[str, ...]], ...]
    ip4: tuple[tuple[str, tuple[str, ...]], ...]
    ip6: tuple[tuple[str, tuple[str, ...]], ...]

    def eb_links(self) -> tuple[tuple[str, str], ...]:
        """The (built-in chain, rule) pairs that send the port's frames to its root chains."""
        names = {n for n, _ in self.eb}
        out = []
        if eb_root(self.port, True) in names:
            out.append(("PREROUTING", f"-i {self.port} -j {eb_root(self.port, True)}"))
        if eb_root(self.port, False) in names:
            out.append(("POSTROUTING", f"-o {self.port} -j {eb_root(self.port, False)}"))
        return tuple(out)

    def ip_links(self) -> tuple[tuple[str, str], ...]:
        """The rules of the shared hook chains for this port (same for both families)."""
        p = self.port
        return (
            ("libvirt-out", f"-m physdev --physdev-out {p} --physdev-is-bridged -g FO-{p}"),
            ("libvirt-in", f"-m physdev --physdev-in {p} -g FI-{p}"),
            ("libvirt-host-in", f"-m physdev --physdev-in {p} -g HI-{p}"),
            ("libvirt-in-post", f"-m physdev --physdev-in {p} -j ACCEPT"),
        )


def render_port(
    port: str,
    dispatch: Mapping[str, str],
    chains: Mapping[str, Sequence[FilterRule]],
    elements: Mapping[str, Sequence[tuple[Value, ...]]],
) -> PortRules:
    """The port's chains from its dispatch (role → IR chain), the IR chains and its elements
    (set → the port's ``(port, *values)`` keys)."""
    eb: list[tuple[str, tuple[str, ...]]] = []
    for role, out_side in (("l2o", True), ("l2i", False)):
        if role in dispatch:
            eb += _eb_tree(port, out_side, chains[dispatch[role]], chains, elements)
    fams: dict[int, dict[str, list[str]]] = {ETH_IP: {}, ETH_IP6: {}}
    for role, names in (("l4o", ("FI", "HI")), ("l4i", ("FO",))):
        for rule in chains.get(dispatch.get(role, ""), ()):
            for fam, text in _ip_rules(rule, role == "l4o", elements):
                for n in names:
                    fams[fam].setdefault(n, []).append(text)
    ip: list[tuple[tuple[str, tuple[str, ...]], ...]] = []
    for fam in (ETH_IP, ETH_IP6):
        if not fams[fam]:
            ip.append(())
            continue
        # libvirt creates all three chains of a family that has any rule (§4.1)
        ip.append(tuple((f"{n}-{port}", tuple(fams[fam].get(n, ()))) for n in ("FO", "FI", "HI")))
    return PortRules(port, tuple(eb), ip[0], ip[1])


# ----------------------------------------------------------------------------- ebtables


def _eb_tree(
    port: str,
    out_side: bool,
    root: Sequence[FilterRule],
    chains: Mapping[str, Sequence[FilterRule]],
    elements: Mapping[str, Sequence[tuple[Value, ...]]],
) -> list[tuple[str, tuple[str, ...]]]:
    root_rules: list[str] = []
    subs: list[tuple[str, tuple[str, ...]]] = []
    for rule in root:
        if rule.verdict.kind == "jump":
            assert rule.verdict.target is not None
            name = eb_sub(port, out_side, rule.label or rule.verdict.target)
            if name not in (n for n, _ in subs):
                body = chains[rule.verdict.target]
                subs.append((name, tuple(r for x in body for r in _eb_rules(x, elements, {}))))
            root_rules += _eb_rules(rule, elements, {rule.verdict.target: name})
        else:
            root_rules += _eb_rules(rule, elements, {})
    return [(eb_root(port, out_side), tuple(root_rules)), *subs]


def _expand(
    rule: FilterRule, elements: Mapping[str, Sequence[tuple[Value, ...]]]
) -> Iterator[list[Stmt]]:
    """The rule's statements once per combination of its lookups' values (literal matches)."""
    choices: list[list[list[Stmt]]] = []
    for m in rule.matches:
        if isinstance(m, Lookup):
            op = "!=" if m.negated else "=="
            rows: list[list[Stmt]] = [
                [Match(f, v, op) for f, v in zip(m.fields, key[1:], strict=True)]
                for key in elements.get(m.set, ())
            ]
            if m.negated and len(rows) > 1:  # compile expands these per port (one value each)
                raise CompileError("a negated lookup with several values cannot be spelled")
            if m.negated and not rows:
                rows = [[]]  # not in an empty set: always true
            choices.append(rows)
        else:
            choices.append([[m]])
    for combo in itertools.product(*choices):
        yield [s for part in combo for s in part]


def _mac(n: int) -> str:
    return ":".join(f"{b:02x}" for b in n.to_bytes(6, "big"))


_EB_OPTS = {  # field → (option, kind); kinds say how a value is written
    ("ether", "saddr"): ("-s", "mac"),
    ("ether", "daddr"): ("-d", "mac"),
    ("ether", "type"): ("-p", "ethertype"),
    ("vlan", "id"): ("--vlan-id", "num"),
    # hex: ebtables reads the value as hex even without 0x (libvirt's decimal "2048" for
    # encap-protocol='ipv4' matches type 0x2048; a deviation, see the README)
    ("vlan", "type"): ("--vlan-encap", "hex"),
    ("arp", "htype"): ("--arp-htype", "num"),
    ("arp", "operation"): ("--arp-opcode", "num"),
    ("arp", "ptype"): ("--arp-ptype", "hex"),
    ("arp", "saddr ip"): ("--arp-ip-src", "ip32"),
    ("arp", "daddr ip"): ("--arp-ip-dst", "ip32"),
    ("arp", "saddr ether"): ("--arp-mac-src", "mac"),
    ("arp", "daddr ether"): ("--arp-mac-dst", "mac"),
    ("ip", "saddr"): ("--ip-source", "ip"),
    ("ip", "daddr"): ("--ip-destination", "ip"),
    ("ip", "dscp"): ("--ip-tos", "hex"),
    ("ip6", "saddr"): ("--ip6-source", "ip"),
    ("ip6", "daddr"): ("--ip6-destination", "ip"),
    ("th", "sport"): ("--ip-source-port", "num"),
    ("th", "dport"): ("--ip-destination-port", "num"),
}
_RARP_OPTS = {  # RARP's raw loads, by the ARP field they stand for
    "hwtype": ("--arp-htype", "num"),
    "protocoltype": ("--arp-ptype", "hex"),
    "opcode": ("--arp-opcode", "num"),
    "arpsrcmacaddr": ("--arp-mac-src", "mac"),
    "arpsrcipaddr": ("--arp-ip-src", "ip32"),
    "arpdstmacaddr": ("--arp-mac-dst", "mac"),
    "arpdstipaddr": ("--arp-ip-dst", "ip32"),
}
_STP_OPTS = {
    "type": "--stp-type",
    "flags": "--stp-flags",
    "root-priority": "--stp-root-pri",
    "root-address": "--stp-root-addr",
    "root-cost": "--stp-root-cost",
    "sender-priority": "--stp-sender-prio",
    "sender-address": "--stp-sender-addr",
    "port": "--stp-port",
    "age": "--stp-msg-age",
    "max-age": "--stp-max-age",
    "hello-time": "--stp-hello-time",
    "forward-delay": "--stp-forward-delay",
}
_RAW_OPTS: dict[RawPayload, tuple[str, str]] = {
    **{
        f.expr: _RARP_OPTS[a]
        for a, f in _RARP_FIELDS.items()
        if isinstance(f.expr, RawPayload) and a in _RARP_OPTS
    },
    **{
        f.expr: (_STP_OPTS[a], "mac" if a.endswith("address") else "num")
        for a, f in _STP_FIELDS.items()
        if isinstance(f.expr, RawPayload)
    },
}
# the LLC header check the stp match does by itself; and its "configuration BPDU" check
# (type 0) whenever a rule compares a field only those BPDUs have
_STP_LLC = RawPayload("ll", 14 * 8, 24)
_STP_TYPE = RawPayload("ll", 20 * 8, 8)
_STP_CONFIG = {f.expr for a, f in _STP_FIELDS.items() if a not in ("srcmacaddr", "type", "flags")}
# sender IP == target IP (arp gratuitous='true'), as ARP fields and as RARP's raw loads
_GRATUITOUS = {
    (Payload("arp", "saddr ip"), Payload("arp", "daddr ip")),
    (_RARP_FIELDS["arpsrcipaddr"].expr, _RARP_FIELDS["arpdstipaddr"].expr),
}
# libvirt's emission order of the options (§3.3)
_EB_ORDER = [
    "-s",
    "-d",
    "-p",
    "--vlan-id",
    "--vlan-encap",
    *_STP_OPTS.values(),
    "--arp-htype",
    "--arp-opcode",
    "--arp-ptype",
    "--arp-ip-src",
    "--arp-ip-dst",
    "--arp-mac-src",
    "--arp-mac-dst",
    "--arp-gratuitous",
    "--ip-source",
    "--ip-destination",
    "--ip-protocol",
    "--ip-source-port",
    "--ip-destination-port",
    "--ip-tos",
    "--ip6-source",
    "--ip6-destination",
    "--ip6-protocol",
    "--ip6-source-port",
    "--ip6-destination-port",
    "--ip6-icmp-type",
]
_EB_RANK = {o: i for i, o in enumerate(_EB_ORDER)}


def _eb_value(kind: str, v: Value, opt: str) -> str:
    if isinstance(v, Range):
        return f"{_eb_value(kind, v.low, opt)}:{_eb_value(kind, v.high, opt)}"
    if isinstance(v, Prefix):
        return f"{v.addr}/{v.length}"
    if isinstance(v, Masked):
        if kind == "mac":
            value = _mac(v.value) if isinstance(v.value, int) else str(v.value)
            mask = _mac(v.mask) if isinstance(v.mask, int) else str(v.mask)
            return f"{value}/{mask}"
        if kind == "ip32" and isinstance(v.value, int) and isinstance(v.mask, int):
            return f"{ipaddress.IPv4Address(v.value)}/{v.mask.bit_count()}"
        raise CompileError(f"ebtables cannot match {opt} under a mask")
    if kind == "mac":
        return _mac(v) if isinstance(v, int) else str(v)
    if kind == "ip32":
        addr = ipaddress.IPv4Address(v) if isinstance(v, int) else str(v)
        return f"{addr}/32"
    if kind == "hex":
        return f"0x{int(str(v)):x}" if not isinstance(v, int) else f"0x{v:x}"
    if kind == "ethertype":
        assert isinstance(v, int)
        return {ETH_IP: "ipv4", ETH_IP6: "ipv6"}.get(v, f"0x{v:x}")
    return str(v)


def _eb_matches(stmts: list[Stmt]) -> str:
    v6 = any(
        isinstance(s, Match) and s.left == Payload("ether", "type") and s.right == ETH_IP6
        for s in stmts
    )
    config = any(isinstance(s, Match) and s.left in _STP_CONFIG for s in stmts)
    opts: list[tuple[str, str, bool]] = []
    icmp: dict[str, Value] = {}
    neg_icmp = False
    for s in stmts:
        if not isinstance(s, Match):
            raise CompileError(f"ebtables cannot express {type(s).__name__}")
        left, neg = s.left, s.op == "!="
        if (left, s.right) in _GRATUITOUS and not neg:
            opts.append(("--arp-gratuitous", "", False))
            continue
        if isinstance(left, RawPayload):
            if left == _STP_LLC or (config and left == _STP_TYPE and s.right == 0 and not neg):
                continue
            if left not in _RAW_OPTS:
                raise CompileError(f"ebtables has no match for raw bits {left}")
            opt, kind = _RAW_OPTS[left]
        elif isinstance(left, Meta) and left.key == "l4proto":
            opt, kind = ("--ip6-protocol" if v6 else "--ip-protocol"), "num"
        elif isinstance(left, Payload) and left.protocol == "icmpv6":
            icmp[left.field] = s.right
            neg_icmp = neg_icmp or neg
            continue
        elif isinstance(left, Payload) and (left.protocol, left.field) in _EB_OPTS:
            opt, kind = _EB_OPTS[(left.protocol, left.field)]
            if v6 and left.protocol == "th":
                opt = opt.replace("--ip-", "--ip6-")
        else:
            raise CompileError(f"ebtables has no match for {left}")
        if opt == "-d" and s.right == STP_GROUP_MAC and not neg:
            opts.append((opt, STP_GROUP_MAC, False))
            continue
        opts.append((opt, _eb_value(kind, s.right, opt), neg))
    if icmp:
        opts.append(("--ip6-icmp-type", _icmp6_range(icmp), neg_icmp))
    opts.sort(key=lambda o: _EB_RANK[o[0]])
    return " ".join(" ".join(x for x in (o, "!" if n else "", v) if x) for o, v, n in opts)


def _icmp6_range(icmp: dict[str, Value]) -> str:
    def span(v: Value | None) -> str:
        if v is None:
            return "0:255"
        if isinstance(v, Range):
            return f"{v.low}:{v.high}"
        return f"{v}:{v}"

    return f"{span(icmp.get('type'))}/{span(icmp.get('code'))}"


def _eb_rules(
    rule: FilterRule,
    elements: Mapping[str, Sequence[tuple[Value, ...]]],
    jumps: Mapping[str, str],
) -> list[str]:
    target = _eb_target(rule.verdict, jumps)
    out = []
    for stmts in _expand(rule, elements):
        m = _eb_matches(stmts)
        out.append(f"{m} -j {target}" if m else f"-j {target}")
    return out


def _eb_target(v: Verdict, jumps: Mapping[str, str]) -> str:
    if v.kind == "jump":
        assert v.target is not None
        return jumps[v.target]
    if v.kind in ("accept", "drop", "return", "continue"):
        return v.kind.upper()
    if v.kind == "reject":
        return "DROP"  # ebtables cannot reject (libvirt does the same)
    raise CompileError(f"ebtables has no verdict {v.kind}")


# ----------------------------------------------------------------------------- iptables

_IPT_ADDR = {"saddr": ("--source", "--src-range"), "daddr": ("--destination", "--dst-range")}
_IPT_ORDER = [
    "-m mac --mac-source",
    "--source",
    "-m iprange --src-range",
    "--destination",
    "-m iprange --dst-range",
    "-m dscp --dscp",
    "--tcp-flags",
    "--sport",
    "--dport",
    "--tcp-option",
    "--icmp-type",
    "--icmpv6-type",
]
_IPT_RANK = {o: i for i, o in enumerate(_IPT_ORDER)}


def _flags(bits: Value) -> str:
    assert isinstance(bits, int)
    if bits == 0:
        return "NONE"
    if bits == sum(TCP_FLAG_BITS.values()):
        return "ALL"
    return ",".join(n for n, b in TCP_FLAG_BITS.items() if bits & b)


def _ip_rules(
    rule: FilterRule, out_side: bool, elements: Mapping[str, Sequence[tuple[Value, ...]]]
) -> Iterator[tuple[int, str]]:
    for stmts in _expand(rule, elements):
        fam, text = _ip_rule(stmts, rule.verdict, out_side)
        yield fam, text


def _ip_rule(stmts: list[Stmt], verdict: Verdict, out_side: bool) -> tuple[int, str]:
    fam, proto = ETH_IP, "all"
    opts: list[tuple[str, str, bool]] = []
    icmp: dict[str, Value] = {}
    icmp_neg = False
    tail: list[str] = []
    after: list[str] = []  # libvirt: set, then connlimit, after the state match
    for s in stmts:
        if isinstance(s, IpSetMatch):
            name = f'"{s.name}"' if " " in s.name else s.name  # a name may hold spaces
            after.insert(0, f"-m set --match-set {name} {','.join(s.flags)}")
            continue
        if isinstance(s, ConnLimit):
            after.append(f"-m connlimit {'! ' if s.negated else ''}--connlimit-above {s.above}")
            continue
        if isinstance(s, CtState):
            if s.states:
                tail.append(f"-m conntrack --ctstate {','.join(s.states)}")
            if s.direction is not None:
                word = "Original" if s.direction == "original" else "Reply"
                tail.append(f"-m conntrack --ctdir {word}")
            continue
        if not isinstance(s, Match):
            raise CompileError(f"iptables cannot express {type(s).__name__}")
        left, v, neg = s.left, s.right, s.op == "!="
        if left == Payload("ether", "type"):
            assert isinstance(v, int)
            fam = v
        elif isinstance(left, Meta) and left.key == "l4proto":
            assert isinstance(v, int)
            proto = _PROTO_NAME.get(v, str(v))
        elif left == Payload("ether", "saddr"):
            opts.append(("-m mac --mac-source", str(v), neg))
        elif isinstance(left, Payload) and left.protocol in ("ip", "ip6"):
            if left.field == "dscp":
                opts.append(("-m dscp --dscp", str(v), neg))
            else:
                single, ranged = _IPT_ADDR[left.field]
                if isinstance(v, Range):
                    opts.append((f"-m iprange {ranged}", f"{v.low}-{v.high}", neg))
                else:
                    val = f"{v.addr}/{v.length}" if isinstance(v, Prefix) else str(v)
                    opts.append((single, val, neg))
        elif isinstance(left, Payload) and left.field in ("sport", "dport"):
            val = f"{v.low}:{v.high}" if isinstance(v, Range) else str(v)
            opts.append((f"--{left.field}", val, neg))
        elif left == Payload("tcp", "flags"):
            assert isinstance(v, Masked)
            opts.append(("--tcp-flags", f"{_flags(v.mask)} {_flags(v.value)}", neg))
        elif isinstance(left, TcpOption):
            opts.append(("--tcp-option", str(left.kind), neg))
        elif isinstance(left, Payload) and left.protocol in ("icmp", "icmpv6"):
            icmp[left.field] = v
            icmp_neg = icmp_neg or neg
        else:
            raise CompileError(f"iptables has no match for {left}")
    if icmp:
        opt = "--icmpv6-type" if fam == ETH_IP6 else "--icmp-type"
        val = str(icmp["type"]) + (f"/{icmp['code']}" if "code" in icmp else "")
        opts.append((opt, val, icmp_neg))
    opts.sort(key=lambda o: _IPT_RANK[o[0]])
    parts = [f"-p {proto}"]
    for o, val, n in opts:
        if n and o.startswith("-m "):
            mod, _, name = o.rpartition(" ")
            parts.append(f"{mod} ! {name} {val}")
        else:
            parts.append(f"! {o} {val}" if n else f"{o} {val}")
    parts += tail + after
    target = _ip_target(verdict, out_side)
    if target:
        parts.append(f"-j {target}")
    return fam, " ".join(parts)


def _ip_target(v: Verdict, out_side: bool) -> str | None:
    if v.kind == "accept":
        return "RETURN" if out_side else "ACCEPT"  # FI/HI hand back to FORWARD (§4.3)
    if v.kind in ("drop", "reject", "return"):
        return v.kind.upper()
    if v.kind == "continue":
        return None  # a rule without a target: on to the next one
    raise CompileError(f"iptables has no verdict {v.kind}")
