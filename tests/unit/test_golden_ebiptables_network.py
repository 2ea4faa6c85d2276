"""Golden restore inputs of virtual networks on the iptables backend, one file per mode.

The cases are those of the nftables golden files (``test_netfw.CASES``); each file holds the
``iptables-restore`` / ``ip6tables-restore`` inputs a start sends to a host without any of
libvirt's chains, then those of the stop. Files: ``tests/golden/ebiptables-network/``;
rewritten by ``make golden`` (review the diff) (network-firewall.md §3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.backends.ebiptables.executor import Runner
from nwguard.backends.ebiptables.network import HOOKS, NetworkFirewall, network_rules
from nwguard.compile import network as netfw
from nwguard.ir.nodes import Batch, Rule
from nwguard.xmlio.network_xml import parse_network

from .test_netfw import CASES

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "ebiptables-network"


class Host(Runner):
    """``saved``: the tables' listings; nothing is ever restored."""

    def __init__(self, saved: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__("nft")
        self.saved = saved or {}

    def save_table(self, kind: str, table: str) -> str:
        return self.saved.get((kind, table), "")

    def restore(self, kind: str, text: str) -> None:
        raise AssertionError("a unit test must not apply")


def stop_batch(start: Batch) -> Batch:
    out = Batch()
    for cmd in start.commands:
        if isinstance(cmd.obj, Rule):
            out.delete(cmd.obj)
    return out


def render(case: str) -> str:
    start = netfw.network_batch(parse_network(CASES[case]))
    fw = NetworkFirewall(runner=Host())
    text = []
    for what, batch in (("start", start), ("stop", stop_batch(start))):
        for argv, stdin in fw.restore_commands(batch):
            text.append(f"# {what}: {' '.join(argv)}\n{stdin}")
    return "\n".join(text) or "(nothing)\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_restore_inputs(case: str) -> None:
    path = GOLDEN / f"{case}.txt"
    text = render(case)
    assert path.exists(), f"{path} missing; run `make golden` and review it"
    assert path.read_text() == text, (
        f"{path} differs; run `make golden` if intended and review the diff"
    )


def test_existing_chains_and_jumps_are_not_made_again_and_come_after_port_filters() -> None:
    start = netfw.network_batch(parse_network(CASES["nat-default"]))
    lines = [
        "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        ":LIBVIRT_INP - [0:0]", ":LIBVIRT_OUT - [0:0]", ":libvirt-in - [0:0]",
        ":libvirt-out - [0:0]", ":libvirt-in-post - [0:0]", "-A INPUT -j LIBVIRT_INP",
        "-A FORWARD -j libvirt-in", "-A FORWARD -j libvirt-out", "-A FORWARD -j libvirt-in-post",
        "-A FORWARD -j someone-else", "COMMIT",
    ]  # fmt: skip
    saved = "\n".join(lines)
    fw = NetworkFirewall(runner=Host({("ip4", "filter"): saved}))
    text = dict(fw.restore_inputs(start))[("ip4", "filter")]
    assert ":LIBVIRT_INP" not in text and "-j LIBVIRT_INP" not in text  # there already
    assert ":LIBVIRT_FWX - [0:0]" in text and "-I OUTPUT 1 -j LIBVIRT_OUT" in text
    assert "-I FORWARD 4 -j LIBVIRT_FWX" in text  # below the three port-filter jumps


def test_a_stop_deletes_exactly_what_the_start_inserted() -> None:
    for case in CASES:
        start = netfw.network_batch(parse_network(CASES[case]))
        added = network_rules(start)
        assert network_rules(stop_batch(start)) == added
        fw = NetworkFirewall(runner=Host())
        for (_kind, _table), text in fw.restore_inputs(stop_batch(start)):
            assert all(ln.startswith(("*", "-D ", "COMMIT")) for ln in text.splitlines())


def test_a_batch_both_adding_and_deleting_rules_is_refused() -> None:
    start = netfw.network_batch(parse_network(CASES["route"]))
    both = Batch([*start.commands, *stop_batch(start).commands])
    with pytest.raises(Exception, match="either adds or deletes"):
        NetworkFirewall(runner=Host()).restore_inputs(both)


def test_drift_reads_rules_in_the_tools_spelling_and_names_what_is_missing() -> None:
    start = netfw.network_batch(parse_network(CASES["route"]))
    rules = network_rules(start)[("ip4", "filter")]
    spelled = [
        f"-A {c} {r} --reject-with icmp-port-unreachable" if r.endswith("REJECT") else f"-A {c} {r}"
        for c, r in rules
    ]
    hooks = [f"-A {h} -j {c}" for h, c in HOOKS["filter"]]
    others = ["-A LIBVIRT_FWO -s 198.51.100.0/24 -j ACCEPT"]
    whole = "\n".join([*hooks, *others, *spelled])
    fw = NetworkFirewall(runner=Host({("ip4", "filter"): whole}))
    assert ("ip4", "filter") not in fw.drift(start)  # as the tools list it: nothing missing
    cut = "\n".join([*hooks, *others, *spelled[1:]])
    fw = NetworkFirewall(runner=Host({("ip4", "filter"): cut}))
    chain, rule = rules[0]
    assert fw.drift(start)[("ip4", "filter")] == [f"{chain}: {rule} missing"]
