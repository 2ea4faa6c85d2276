"""ipset, connlimit-above and arp gratuitous: typed IR, spelled by the iptables backend.

libvirt 9.0.0's listings for these (``tests/golden/libvirt/limits-guest.txt``) are compared
in the kernel suite; here: the copies each rule gets, the spelling of each restore-input
line, and that the IR keeps them through the state's codec.
"""

from __future__ import annotations

import pytest

from nwguard.backends.ebiptables.executor import EbiptablesExecutor
from nwguard.compile.kernel_state import KernelState, full
from nwguard.compile.program import compile_port
from nwguard.ir.codec import decode, encode
from nwguard.ir.nodes import ConnLimit, IpSetMatch, Match, Payload
from nwguard.resolve.resolver import resolve

from .test_compile import filters, rule
from .test_golden_ebiptables import EmptyHost


def inputs(body: str, params: dict[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """The port's rules in each restore input (``-A`` lines of its own chains)."""
    fs = filters(f"<filter name='t' chain='root'>{body}</filter>")
    state = KernelState().with_port("vnet0", compile_port("vnet0", resolve(fs, "t", params or {})))
    texts = EbiptablesExecutor(runner=EmptyHost()).restore_inputs(full(state))
    return {
        k: [ln for ln in (t or "").splitlines() if ln.startswith("-A ") and _own(ln.split()[1])]
        for k, t in texts.items()
    }


def _own(chain: str) -> bool:
    return chain.endswith("-vnet0") or "-vnet0-" in chain


def test_gratuitous_arp_is_one_ebtables_option() -> None:
    got = inputs(rule("<arp gratuitous='true'/>", action="drop"))
    assert got["eb"] == ["-A libvirt-I-vnet0 -p 0x806 --arp-gratuitous -j DROP"]


def test_gratuitous_false_is_ignored_on_iptables_too() -> None:
    got = inputs(rule("<arp gratuitous='false'/>", action="drop"))
    assert got["eb"] == ["-A libvirt-I-vnet0 -p 0x806 -j DROP"]


def test_ipset_flags_are_swapped_in_mirrored_copies() -> None:
    got = inputs(rule("<all ipset='blocked' ipsetflags='src,dst'/>", "in", "drop"))
    assert got["ip4"] == [
        "-A FO-vnet0 -p all -m set --match-set blocked src,dst -j DROP",
        "-A FI-vnet0 -p all -m set --match-set blocked dst,src -j DROP",
        "-A HI-vnet0 -p all -m set --match-set blocked dst,src -j DROP",
    ]


def test_ipset_comes_after_the_state_match_and_a_name_with_spaces_is_quoted() -> None:
    got = inputs(rule("<all state='NEW' ipset='my set' ipsetflags='dst'/>", "out", "drop"))
    assert got["ip4"] == [
        '-A FI-vnet0 -p all -m conntrack --ctstate NEW -m set --match-set "my set" dst -j DROP',
        '-A HI-vnet0 -p all -m conntrack --ctstate NEW -m set --match-set "my set" dst -j DROP',
    ]


def test_ipset_without_flags_is_ignored_as_libvirt_does() -> None:
    got = inputs(rule("<all ipset='blocked' state='NEW'/>", "out", "drop"))
    assert got["ip4"] == [
        "-A FI-vnet0 -p all -m conntrack --ctstate NEW -j DROP",
        "-A HI-vnet0 -p all -m conntrack --ctstate NEW -j DROP",
    ]


@pytest.mark.parametrize(
    ("direction", "chains"),
    [("out", ["FI", "HI"]), ("in", ["FO"]), ("inout", ["FO"])],
)
def test_connlimit_only_in_the_copies_as_written_and_without_default_state(
    direction: str, chains: list[str]
) -> None:
    got = inputs(rule("<tcp connlimit-above='3'/>", direction, "accept"))
    target = {"FI": "RETURN", "HI": "RETURN", "FO": "ACCEPT"}
    assert got["ip4"] == [
        f"-A {c}-vnet0 -p tcp -m connlimit --connlimit-above 3 -j {target[c]}" for c in chains
    ]


def test_connlimit_keeps_an_explicit_state_and_its_negation() -> None:
    got = inputs(rule("<tcp match='no' connlimit-above='3' state='NEW'/>", "out", "drop"))
    assert got["ip4"] == [
        f"-A {c}-vnet0 -p tcp -m conntrack --ctstate NEW -m connlimit ! --connlimit-above 3 -j DROP"
        for c in ("FI", "HI")
    ]


def test_ipset_and_connlimit_from_variables_are_expanded_per_port() -> None:
    got = inputs(
        rule("<all ipset='$S' ipsetflags='src' connlimit-above='$N'/>", "out", "drop"),
        {"S": ("set1",), "N": ("4",)},
    )
    assert got["ip4"] == [
        f"-A {c}-vnet0 -p all -m set --match-set set1 src -m connlimit --connlimit-above 4 -j DROP"
        for c in ("FI", "HI")
    ]


def test_the_new_nodes_survive_the_state_codec() -> None:
    for node in (
        IpSetMatch("blocked", ("src", "dst")),
        ConnLimit(3, True),
        Match(Payload("arp", "saddr ip"), Payload("arp", "daddr ip")),
    ):
        assert decode(encode(node)) == node
