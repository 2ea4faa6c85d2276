"""Golden files: one port's kernel contribution for representative filters.

Each case binds one filter (built-in or defined here) to one port and renders what the port
contributes: its dispatch entries, the chains it uses (root chains first, then every chain
they jump to, in order), its sets with their per-port elements, and the fallback count.
``<case>-batch.json`` cases render the whole transaction that binds the port to an empty
kernel state instead. One rule (one command) per line, so a diff shows whole rules.

Files: ``tests/golden/nft/<case>.json``; the tests only compare. After an intended change,
``make golden`` (scripts/regen_golden.py) rewrites them: review the diff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nwguard.backends.nft.render import chain_rule_exprs, set_key_type, to_nft
from nwguard.builtin import builtin_filters
from nwguard.compile.kernel_state import KernelState, diff
from nwguard.compile.program import ROLES, Contribution, compile_port
from nwguard.model.filter import Filter
from nwguard.resolve.resolver import resolve
from nwguard.xmlio.filter_xml import parse_filter

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "nft"
MAC = "52:54:00:12:34:56"

# The seed's example (libvirt's nwfilter introduction): no mail from guests.
NO_SPAMMING = """<filter name='no-spamming' chain='root'>
  <uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportstart='25' dstportend='25'/>
  </rule>
</filter>"""

# ebiptables-layout.md §6, the worked example.
WEB_GUEST = """<filter name='web-guest' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in'><tcp dstportstart='80'/></rule>
  <rule action='accept' direction='out'><udp dstportstart='53'/></rule>
  <rule action='drop' direction='inout' priority='1000'><all/></rule>
</filter>"""

# Connection state: ssh in with an explicit state, replies by state, https out by the
# default NEW,ESTABLISHED/ESTABLISHED pair, the rest of tcp rejected, everything else dropped.
SSH_SERVER = """<filter name='ssh-server' chain='root'>
  <rule action='accept' direction='in' priority='100'>
    <tcp dstportstart='22' state='NEW,ESTABLISHED'/>
  </rule>
  <rule action='accept' direction='out' priority='100'>
    <tcp srcportstart='22' state='ESTABLISHED'/>
  </rule>
  <rule action='accept' direction='out'><tcp dstportstart='443' dstipaddr='$WEB'/></rule>
  <rule action='accept' direction='out' statematch='false'><udp dstportstart='123'/></rule>
  <rule action='reject' direction='inout' priority='900'><tcp/></rule>
  <rule action='drop' direction='inout' priority='1000'><all/></rule>
</filter>"""

# IPv6: MAC and address anti-spoofing, DHCPv6, neighbour discovery at L2, ssh in, ping out.
V6_GUEST = """<filter name='v6-guest' chain='root'>
  <filterref filter='no-mac-spoofing'/>
  <filterref filter='no-ipv6-spoofing'/>
  <filterref filter='allow-dhcpv6'/>
  <rule action='accept' direction='inout' priority='-650'>
    <ipv6 protocol='icmpv6' type='133' typeend='136'/>
  </rule>
  <rule action='accept' direction='out' priority='-550'><mac protocolid='ipv6'/></rule>
  <filterref filter='allow-incoming-ipv6'/>
  <rule action='accept' direction='in'><tcp-ipv6 dstportstart='22' srcipaddr='2001:db8::' srcipmask='32'/></rule>
  <rule action='accept' direction='out'><icmpv6 type='128'/></rule>
  <rule action='drop' direction='inout' priority='1000'><all-ipv6/></rule>
  <filterref filter='no-other-l2-traffic'/>
</filter>"""

# Bridge protocols: no BPDUs from the guest and only topology changes or sane root claims
# towards it; only its own VLAN out, tagged IPv4 to its own MAC in.
STP_GUARD = """<filter name='stp-guard' chain='stp' priority='-810'>
  <rule action='drop' direction='out'><stp/></rule>
  <rule action='accept' direction='in'><stp type='0x80'/></rule>
  <rule action='drop' direction='in'><stp root-priority='0' root-priority-hi='4095'/></rule>
</filter>"""
VLAN_GUARD = """<filter name='vlan-guard' chain='vlan'>
  <rule action='return' direction='out'><vlan vlanid='$VLAN'/></rule>
  <rule action='drop' direction='out'><vlan/></rule>
</filter>"""
BRIDGE_GUARD = """<filter name='bridge-guard' chain='root'>
  <filterref filter='stp-guard'/>
  <filterref filter='vlan-guard'/>
  <rule action='drop' direction='in' priority='-900'><vlan match='no' dstmacaddr='$MAC'/></rule>
  <rule action='accept' direction='in'><vlan vlanid='$VLAN' encap-protocol='ipv4'/></rule>
</filter>"""


@dataclass(frozen=True)
class Case:
    top: str
    params: dict[str, tuple[str, ...]]
    docs: tuple[str, ...] = ()
    port: str = "vnet3"
    batch: bool = False


CASES = {
    "clean-traffic": Case("clean-traffic", {"MAC": (MAC,), "IP": ("10.0.0.5",)}),
    "clean-traffic-two-ips": Case(
        "clean-traffic", {"MAC": (MAC,), "IP": ("10.0.0.5", "10.0.0.6")}, port="vnet4"
    ),
    "no-spamming": Case("no-spamming", {"MAC": (MAC,)}, (NO_SPAMMING,)),
    "no-spamming-batch": Case("no-spamming", {"MAC": (MAC,)}, (NO_SPAMMING,), batch=True),
    "web-guest": Case("web-guest", {"MAC": (MAC,), "IP": ("10.0.0.5",)}, (WEB_GUEST,)),
    "ssh-server": Case("ssh-server", {"WEB": ("192.0.2.10", "192.0.2.11")}, (SSH_SERVER,)),
    "v6-guest": Case(
        "v6-guest",
        {"MAC": (MAC,), "IPV6": ("2001:db8::5", "fe80::5054:ff:fe12:3456")},
        (V6_GUEST,),
    ),
    "bridge-guard": Case(
        "bridge-guard", {"MAC": (MAC,), "VLAN": ("42",)}, (STP_GUARD, VLAN_GUARD, BRIDGE_GUARD)
    ),
}


def library(case: Case) -> dict[str, Filter]:
    fs = builtin_filters()
    for doc in case.docs:
        f = parse_filter(doc)
        fs[f.name] = f
    return fs


def contribution(case: Case) -> Contribution:
    return compile_port(case.port, resolve(library(case), case.top, case.params))


# ----------------------------------------------------------------------------- rendering


def _targets(expr: Any) -> list[str]:
    """Chains a rule jumps or goes to (through a verdict or any nested verdict value)."""
    out: list[str] = []
    if isinstance(expr, dict):
        for k, v in expr.items():
            if k in ("jump", "goto") and isinstance(v, dict) and "target" in v:
                out.append(v["target"])
            else:
                out += _targets(v)
    elif isinstance(expr, list):
        for v in expr:
            out += _targets(v)
    return out


def _set_refs(expr: Any) -> list[str]:
    text = json.dumps(expr)
    out = []
    for part in text.split('"@')[1:]:
        out.append(part.split('"', 1)[0])
    return out


def rendered(c: Contribution) -> dict[str, list[Any]]:
    """The contribution's chains as the nftables backend renders their rules (with the
    counting rule before each drop or reject rule)."""
    return {name: chain_rule_exprs(name, rules) for name, rules in c.chains.items()}


def chain_order(c: Contribution, reachable_only: bool = False) -> list[str]:
    """Root chains in role order, then depth-first every chain reached from them."""
    order: list[str] = []
    chains = rendered(c)

    def visit(name: str) -> None:
        if name in order or name not in chains:
            return
        order.append(name)
        for r in chains[name]:
            for t in _targets(r):
                visit(t)
            for s in _set_refs(r):  # a per-port verdict map's targets
                for e in c.elements.get(s, []):
                    for t in e[1:]:
                        visit(t)

    for role in ROLES:
        if role in c.dispatch:
            visit(c.dispatch[role])
    if not reachable_only:
        for name in sorted(c.chains):  # anything unreachable still shows
            visit(name)
    return order


def _lines(items: list[str], indent: str) -> str:
    return ",\n".join(indent + i for i in items)


def render_contribution(name: str, case: Case, c: Contribution) -> str:
    chains = chain_order(c)
    bodies = rendered(c)
    set_order = [s for ch in chains for r in bodies[ch] for s in _set_refs(r)]
    sets = [s for i, s in enumerate(set_order) if s in c.sets and s not in set_order[:i]]
    sets += sorted(set(c.sets) - set(sets))
    parts = [
        f'  "case": {json.dumps(name)}',
        f'  "filter": {json.dumps(case.top)}',
        f'  "port": {json.dumps(case.port)}',
        f'  "params": {json.dumps(case.params, sort_keys=True)}',
        f'  "dispatch": {json.dumps({r: c.dispatch[r] for r in ROLES if r in c.dispatch})}',
    ]
    chain_text = []
    for ch in chains:
        body = _lines([json.dumps(r) for r in bodies[ch]], "      ")
        chain_text.append(f'    "{ch}": [\n{body}\n    ]' if body else f'    "{ch}": []')
    parts.append('  "chains": {\n' + ",\n".join(chain_text) + "\n  }")
    set_text = []
    for s in sets:
        elements = _lines([json.dumps(e) for e in c.elements.get(s, [])], "        ")
        set_text.append(
            f'    "{s}": {{\n      "type": {json.dumps([set_key_type(k) for k in c.sets[s]])},\n'
            f'      "elements": [\n{elements}\n      ]\n    }}'
        )
    parts.append('  "sets": {' + ("\n" + ",\n".join(set_text) + "\n  }" if set_text else "}"))
    parts.append(f'  "fallback_rules": {c.fallback_rules}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def render_batch(c: Contribution, port: str) -> str:
    state = KernelState().with_port(port, c)
    cmds = to_nft(diff(KernelState(), state, {port})).to_json()["nftables"]
    return '{"nftables": [\n' + _lines([json.dumps(x) for x in cmds], " ") + "\n]}\n"


def render(name: str) -> str:
    case = CASES[name]
    c = contribution(case)
    return render_batch(c, case.port) if case.batch else render_contribution(name, case, c)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    text = render(name)
    assert path.exists(), f"{path} missing; run `make golden` and review it"
    assert path.read_text() == text, f"{path} differs; run `make golden` and review the diff"


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if not c.batch))
def test_rendering_is_the_contribution(name: str) -> None:
    """The golden text is valid JSON holding exactly the contribution's data."""
    case = CASES[name]
    c = contribution(case)
    data = json.loads(render(name))
    assert data["dispatch"] == c.dispatch
    assert data["chains"] == rendered(c) and list(data["chains"]) == chain_order(c)
    assert {s: v["type"] for s, v in data["sets"].items()} == {
        s: [set_key_type(k) for k in key] for s, key in c.sets.items()
    }
    assert {s: v["elements"] for s, v in data["sets"].items()} == {
        s: [list(k) for k in c.elements.get(s, [])] for s in c.sets
    }
    assert data["fallback_rules"] == c.fallback_rules


def test_every_chain_is_reachable_from_the_dispatch() -> None:
    for name, case in CASES.items():
        c = contribution(case)
        assert set(chain_order(c, reachable_only=True)) == set(c.chains), name


def test_no_stale_golden_files() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} <= set(CASES)
