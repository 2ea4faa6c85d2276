"""The iptables/ebtables backend makes what libvirt 9.0.0 makes, listing for listing.

``tests/golden/libvirt/<case>.txt`` holds ``ebtables -t nat -L``, ``iptables -S`` and
``ip6tables -S`` as libvirt 9.0.0 left them after binding the case's filter to the case's
port (``/work/shared/tools/libvirt-ref``, tables emptied before each binding). Here nwguard's
backend binds the same filter to the same port in a fresh namespace; the listings must be
equal, and removing the port must leave no rule of nwguard and another's chain in place.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from nwguard.backends.ebiptables.executor import EbiptablesExecutor, Runner
from nwguard.compile.kernel_state import KernelState, full


def _golden_cases() -> ModuleType:
    """The unit suite's golden cases (``tests/unit`` is not importable from here)."""
    path = Path(__file__).resolve().parent.parent / "unit" / "test_golden.py"
    spec = importlib.util.spec_from_file_location("nwguard_golden_cases", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


_G = _golden_cases()
contribution = _G.contribution

# What only this backend can say (nftables refuses it): ipset, connlimit-above, gratuitous ARP.
LIMITS_GUEST = """\
<filter name='limits-guest' chain='root'>
  <rule action='drop' direction='out' priority='400'><arp gratuitous='true'/></rule>
  <rule action='drop' direction='inout' priority='410'><rarp gratuitous='true' opcode='Request_Reverse'/></rule>
  <rule action='drop' direction='in'><tcp ipset='blocked' ipsetflags='src,dst' dstportstart='22'/></rule>
  <rule action='drop' direction='out'><tcp connlimit-above='2' dstportstart='80'/></rule>
  <rule action='accept' direction='inout'><udp ipset='allowed' ipsetflags='dst'/></rule>
  <rule action='drop' direction='in'><tcp connlimit-above='3'/></rule>
  <rule action='drop' direction='inout'><tcp connlimit-above='5' dstportstart='443'/></rule>
  <rule action='accept' direction='out'><tcp match='no' connlimit-above='7'/></rule>
  <rule action='accept' direction='out'><tcp-ipv6 ipset='v6set' ipsetflags='src' dstportstart='53'/></rule>
  <rule action='drop' direction='out'><all state='NEW' ipset='blocked' ipsetflags='dst'/></rule>
</filter>
"""
# the ipsets the case's rules name, made in the namespace before binding (as for libvirt)
IPSETS = {
    "limits-guest": [
        ["blocked", "hash:ip,port"],
        ["allowed", "hash:ip,port"],
        ["v6set", "hash:ip", "family", "inet6"],
    ]
}
CASES = _G.CASES  # both backends can bind these (the frame battery compares them)
LISTED = {**CASES, "limits-guest": _G.Case("limits-guest", {}, (LIMITS_GUEST,))}
pytestmark = pytest.mark.kernel

LIBVIRT = Path(__file__).resolve().parent.parent / "golden" / "libvirt"
NAMES = sorted(p.stem for p in LIBVIRT.glob("*.txt"))


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"nwgt-{os.getpid()}-{secrets.token_hex(3)}-ebt"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _sh(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True
    ).stdout


def listing(ns: str) -> str:
    return (
        "## ebtables -t nat -L\n"
        + _sh(ns, "ebtables", "-t", "nat", "-L")
        + "## iptables -S\n"
        + _sh(ns, "iptables", "-S")
        + "## ip6tables -S\n"
        + _sh(ns, "ip6tables", "-S")
    )


def bind(ns: str, name: str) -> None:
    """Bind case ``name``'s filter to its port in ``ns`` (after making the ipsets it names)."""
    case = LISTED[name]
    for argv in IPSETS.get(name, ()):
        _sh(ns, "ipset", "create", *argv)  # the namespace's own sets: gone with it
    ex = EbiptablesExecutor(runner=Runner("nft", ["ip", "netns", "exec", ns]))
    ex.apply(full(KernelState().with_port(case.port, contribution(case))))


@pytest.mark.parametrize("name", NAMES)
def test_listing_is_libvirts(ns: str, name: str) -> None:
    bind(ns, name)
    assert listing(ns) == libvirts(name)


# Where nwguard deliberately lists otherwise (README, "deviations"): libvirt passes
# encap-protocol='ipv4' as "--vlan-encap 2048", which ebtables reads as hex 0x2048.
_V6_STATE_OUT = "-m conntrack --ctstate NEW,ESTABLISHED -m conntrack --ctdir ORIGINAL"
_V6_STATE_IN = "-m conntrack --ctstate ESTABLISHED -m conntrack --ctdir REPLY"
# libvirt 9.0.0 matches ipset on all/all-ipv6 only and drops it from every other protocol
# (the rule then applies to all addresses); nwguard keeps the set match: (rule, its set).
_KEPT_SETS = [
    ("-A FI-vnet3 -p tcp -m tcp --sport 22", "blocked dst,src"),
    ("-A FO-vnet3 -p tcp -m tcp --dport 22", "blocked src,dst"),
    ("-A HI-vnet3 -p tcp -m tcp --sport 22", "blocked dst,src"),
    ("-A FI-vnet3 -p udp", "allowed src"),
    ("-A FO-vnet3 -p udp", "allowed dst"),
    ("-A HI-vnet3 -p udp", "allowed src"),
    ("-A FI-vnet3 -p tcp -m tcp --dport 53 " + _V6_STATE_OUT, "v6set src"),
    ("-A FO-vnet3 -p tcp -m tcp --sport 53 " + _V6_STATE_IN, "v6set dst"),
    ("-A HI-vnet3 -p tcp -m tcp --dport 53 " + _V6_STATE_OUT, "v6set src"),
]
DEVIATIONS = {
    "bridge-guard": [("--vlan-encap 2048 ", "--vlan-encap 0800 ")],
    "limits-guest": [(f"{r} -j", f"{r} -m set --match-set {m} -j") for r, m in _KEPT_SETS],
}


def libvirts(name: str) -> str:
    text = (LIBVIRT / f"{name}.txt").read_text()
    for theirs, ours in DEVIATIONS.get(name, ()):
        assert theirs in text  # the golden file still shows libvirt's spelling
        text = text.replace(theirs, ours)
    return text


def test_removing_the_port_leaves_only_others_rules(ns: str) -> None:
    _sh(ns, "ebtables", "-t", "nat", "-N", "someone-else")
    _sh(ns, "iptables", "-N", "someone-else")
    _sh(ns, "iptables", "-A", "FORWARD", "-j", "someone-else")
    empty = listing(ns)
    case = CASES["web-guest"]
    ex = EbiptablesExecutor(runner=Runner("nft", ["ip", "netns", "exec", ns]))
    ex.apply(full(KernelState().with_port(case.port, contribution(case))))
    assert listing(ns) != empty  # control: the port's rules were there
    ex.apply(full(KernelState()))
    assert listing(ns) == empty
    # a fresh executor (another process) also starts from the kernel's listing
    ex2 = EbiptablesExecutor(runner=Runner("nft", ["ip", "netns", "exec", ns]))
    ex2.apply(full(KernelState().with_port(case.port, contribution(case))))
    ex2.apply(full(KernelState().with_port(case.port, contribution(case))))
    assert "FI-vnet3" in _sh(ns, "iptables", "-S")
    ex2.apply(full(KernelState()))
    assert listing(ns) == empty


@pytest.mark.parametrize(
    "name", [n for n in NAMES if "Bridge chain: libvirt-" in (LIBVIRT / f"{n}.txt").read_text()]
)
def test_ebtables_chains_return_at_their_end_as_libvirts_do(ns: str, name: str) -> None:
    """Regression: chains declared ``:chain ACCEPT`` got a final accept from ebtables-nft
    (while ``ebtables -L`` still listed "policy: RETURN"), so a frame falling off a sub-chain
    was accepted instead of going on in the root chain."""
    bind(ns, name)
    builtin = {"PREROUTING", "OUTPUT", "POSTROUTING"}
    policies = {
        line.split()[0][1:]: line.split()[1]
        for line in _sh(ns, "ebtables-nft-save").splitlines()
        if line.startswith(":") and line.split()[0][1:] not in builtin
    }
    assert policies  # control: the case made chains
    assert set(policies.values()) == {"RETURN"}, policies
