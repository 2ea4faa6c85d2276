"""The ``nwguard nwfilter-binding-*`` commands, run as a separate process in the lab's host
namespace (``ip netns exec``), against the kernel: create, list (text and --json), dumpxml,
delete, refusals, and ``--dry-run`` printing the exact batch while changing nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from nwguard.backends.nft import layout

from .lab import Lab, Node
from .nwg import (
    IPTABLES_TOOLS,
    Nwguard,
    binding_xml,
    deliveries,
    iptables_listing,
    iptables_tool,
)

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")
FOREIGN_IP = "192.0.2.252"


class Cli:
    """The nwguard command with private config and state directories, in the host namespace."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.dirs = ["--config-dir", str(tmp / "etc"), "--state-dir", str(tmp / "run")]

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = self.lab.run(self.lab.host_ns, NWGUARD, *self.dirs, *args, check=False)
        if ok and out.returncode != 0:
            raise AssertionError(f"nwguard {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    def binding_file(self, guest: Node, filter: str = "clean-traffic", **params) -> str:
        f = self.tmp / f"{guest.port}.xml"
        f.write_text(binding_xml(guest.port, guest.mac, filter, **params))
        return str(f)


@pytest.fixture
def cli(lab: Lab, tmp_path: Path, firewall_backend: str) -> Cli:
    return Cli(lab, tmp_path)


def on_nftables() -> bool:
    return (os.environ.get("NWGUARD_FIREWALL_BACKEND") or "nftables") == "nftables"


COUNTER_SETS = (layout.DROPS,)


def table(lab: Lab, family: str = "bridge") -> list[dict] | None:
    """``bridge nwguard`` (or ``inet``) without handles, or None when there is no such table.

    The counter sets' elements are left out: the traffic counts, not the ruleset."""
    out = lab.run(lab.host_ns, "nft", "-j", "list", "table", family, "nwguard", check=False)
    if out.returncode != 0:
        return None
    items = json.loads(out.stdout)["nftables"]
    for item in items:
        for kind, body in item.items():
            if isinstance(body, dict):
                body.pop("handle", None)
                if kind == "set" and body.get("name") in COUNTER_SETS:
                    body.pop("elem", None)
    return [i for i in items if "metainfo" not in i]


def kernel(lab: Lab) -> object:
    if not on_nftables():
        return iptables_listing(lab)
    return table(lab, "bridge"), table(lab, "inet")


def spoof_dropped(lab: Lab, a: Node, b: Node) -> bool:
    """Whether a's spoofed source address is dropped; its own address must pass either way
    (the pass control: a deaf receiver fails here instead of looking like a drop)."""
    spoof = Ether(src=a.mac, dst=b.mac) / IP(src=FOREIGN_IP, dst=b.ip) / UDP() / Raw(b"spoof")
    own = Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / UDP() / Raw(b"own")
    got = deliveries(lab, a, {"spoof": spoof, "own": own}, b)
    assert got["own"], "a's own address did not reach b: the receiver hears nothing"
    return not got["spoof"]


def apply_batch(lab: Lab, batch_text: str) -> None:
    """Apply a --dry-run output by hand: its nft-syntax part first, then the JSON batch;
    on iptables each restore command with its input."""
    out = json.loads(batch_text)
    if not on_nftables():
        for run in out["restore"]:
            lab.run(lab.host_ns, *run["command"], input=run["input"])
        return
    if out.get("nft_syntax_first"):
        lab.run(lab.host_ns, "nft", "-f", "-", input="\n".join(out["nft_syntax_first"]) + "\n")
    lab.run(lab.host_ns, "nft", "-j", "-f", "-", input=json.dumps({"nftables": out["nftables"]}))


def test_create_list_dumpxml_and_delete_a_binding(lab, cli):
    a, b = lab.guest("a"), lab.guest("b")
    out = cli("nwfilter-binding-create", cli.binding_file(a, IP=a.ip))
    assert a.port in out.stdout and "created" in out.stdout
    assert spoof_dropped(lab, a, b) and lab.ping(a, b)

    listing = cli("nwfilter-binding-list").stdout.splitlines()
    assert listing[0].split() == ["Port", "Dev", "Filter"]
    assert [line.split() for line in listing[2:]] == [[a.port, "clean-traffic"]]
    assert json.loads(cli("nwfilter-binding-list", "--json").stdout) == [
        {"portdev": a.port, "filter": "clean-traffic"}
    ]

    xml = cli("nwfilter-binding-dumpxml", a.port).stdout
    assert f"<portdev name='{a.port}'/>" in xml and f"<mac address='{a.mac}'/>" in xml
    assert "<filterref filter='clean-traffic'>" in xml
    assert f"<parameter name='IP' value='{a.ip}'/>" in xml

    out = cli("nwfilter-binding-delete", a.port)
    assert a.port in out.stdout and "deleted" in out.stdout
    assert json.loads(cli("nwfilter-binding-list", "--json").stdout) == []
    if on_nftables():
        bridge = table(lab)
        assert bridge is not None
        port_chains = [o for o in bridge if "chain" in o and "hook" not in o["chain"]]
        assert [o["chain"]["name"] for o in port_chains] == [layout.DROPS_ANCHOR]  # fixed ones only
    else:
        assert iptables_listing(lab) == {tool: [] for tool, _ in IPTABLES_TOOLS}
    assert not spoof_dropped(lab, a, b)

    # what dumpxml printed is a binding file nwguard takes back
    again = cli.tmp / "again.xml"
    again.write_text(xml)
    cli("nwfilter-binding-create", str(again))
    assert cli("nwfilter-binding-dumpxml", a.port).stdout == xml
    assert spoof_dropped(lab, a, b)


def test_two_bindings_list_sorted_by_port(lab, cli):
    guests = [lab.guest("a"), lab.guest("b")]
    for g in reversed(guests):
        cli("nwfilter-binding-create", cli.binding_file(g, IP=g.ip))
    rows = json.loads(cli("nwfilter-binding-list", "--json").stdout)
    assert [r["portdev"] for r in rows] == sorted(g.port for g in guests)


def test_create_for_a_missing_port_fails_with_a_message_and_changes_nothing(lab, cli):
    a = lab.guest("a")
    f = cli.tmp / "ghost.xml"
    f.write_text(binding_xml("ghost0", a.mac, "clean-traffic", IP=a.ip))
    before = kernel(lab)
    out = cli("nwfilter-binding-create", str(f), ok=False)
    assert out.returncode != 0 and "ghost0" in out.stderr and out.stderr.startswith("error:")
    assert kernel(lab) == before
    assert json.loads(cli("nwfilter-binding-list", "--json").stdout) == []


def test_create_twice_for_one_port_fails(lab, cli):
    a = lab.guest("a")
    f = cli.binding_file(a, IP=a.ip)
    cli("nwfilter-binding-create", f)
    out = cli("nwfilter-binding-create", f, ok=False)
    assert out.returncode != 0 and a.port in out.stderr


def test_create_of_a_filter_missing_a_variable_fails_and_names_it(lab, cli):
    # (a missing IP is learned, as libvirt does; any other variable must be given)
    a = lab.guest("a")
    before = kernel(lab)
    out = cli("nwfilter-binding-create", cli.binding_file(a, "allow-dhcp-server"), ok=False)
    assert out.returncode != 0 and "DHCPSERVER" in out.stderr, out.stderr
    assert kernel(lab) == before


def test_delete_of_an_unbound_port_fails(lab, cli):
    a = lab.guest("a")
    out = cli("nwfilter-binding-delete", a.port, ok=False)
    assert out.returncode != 0 and a.port in out.stderr


def test_dry_run_create_prints_the_exact_batch_and_changes_nothing(lab, cli):
    a, b = lab.guest("a"), lab.guest("b")
    f = cli.binding_file(a, IP=a.ip)
    before = kernel(lab)
    out = cli("--dry-run", "nwfilter-binding-create", f)
    batch = json.loads(out.stdout)
    if on_nftables():
        assert batch["nftables"] and all(len(cmd) == 1 for cmd in batch["nftables"])
    else:
        assert batch["backend"] == "iptables" and batch["restore"]
        assert all(run["command"][1:] == ["--noflush"] for run in batch["restore"])
    assert kernel(lab) == before  # nothing applied ...
    assert json.loads(cli("nwfilter-binding-list", "--json").stdout) == []  # ... or saved
    assert not spoof_dropped(lab, a, b)

    # The batch is the one a real create applies: applied by hand, it gives the same tables.
    apply_batch(lab, out.stdout)
    by_hand = kernel(lab)
    assert spoof_dropped(lab, a, b)
    if on_nftables():
        assert table(lab, "inet") is None  # clean-traffic needs no IP-layer table
        lab.run(lab.host_ns, "nft", "delete", "table", "bridge", "nwguard")
    else:
        empty_tables(lab)
    cli("nwfilter-binding-create", f)
    assert kernel(lab) == by_hand


def empty_tables(lab: Lab) -> None:
    for tool, table_name in IPTABLES_TOOLS:
        for op in ("-F", "-X"):
            lab.run(lab.host_ns, iptables_tool(tool), "-t", table_name, op)


@pytest.mark.nftables_only
def test_dry_run_create_of_a_second_binding_prints_only_its_changes(lab, cli):
    a, b = lab.guest("a"), lab.guest("b")
    cli("nwfilter-binding-create", cli.binding_file(a, IP=a.ip))
    before = kernel(lab)
    f = cli.binding_file(b, IP=b.ip)
    out = cli("--dry-run", "nwfilter-binding-create", f)
    assert kernel(lab) == before
    verbs = {next(iter(cmd)) for cmd in json.loads(out.stdout)["nftables"]}
    assert "delete" not in verbs  # no table is rebuilt for one more port
    apply_batch(lab, out.stdout)
    by_hand = kernel(lab)
    lab.run(lab.host_ns, "nft", "-j", "-f", "-", input=json.dumps(reverse_of(out.stdout)))
    assert kernel(lab) == before
    cli("nwfilter-binding-create", f)
    assert kernel(lab) == by_hand


def test_dry_run_of_a_second_binding_prints_only_its_restore_inputs(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "iptables")
    cli = Cli(lab, tmp_path)
    a, b = lab.guest("a"), lab.guest("b")
    cli("nwfilter-binding-create", cli.binding_file(a, IP=a.ip))
    before = kernel(lab)
    f = cli.binding_file(b, IP=b.ip)
    out = cli("--dry-run", "nwfilter-binding-create", f)
    assert kernel(lab) == before and not spoof_dropped(lab, b, a)
    runs = json.loads(out.stdout)["restore"]
    assert runs and b.port in out.stdout
    assert a.port not in out.stdout  # the first port's chains (ebtables only) are untouched
    apply_batch(lab, out.stdout)
    by_hand = kernel(lab)
    assert spoof_dropped(lab, b, a)
    empty_tables(lab)
    Nwguard(lab, cli.tmp).call("nwfilter_reapply")  # the state in force: the first port
    assert kernel(lab) == before
    cli("nwfilter-binding-create", f)
    assert kernel(lab) == by_hand


def reverse_of(batch_text: str) -> dict:
    """Undo an additions-only batch: delete its elements, then its rules' chains and sets."""
    cmds = [cmd["add"] for cmd in json.loads(batch_text)["nftables"]]
    undo = [{"delete": c} for c in cmds if "element" in c]
    undo += [{"flush": c} for c in cmds if "chain" in c]
    undo += [{"delete": c} for c in cmds if "set" in c or "map" in c]
    undo += [{"delete": c} for c in cmds if "chain" in c]
    return {"nftables": undo}


def test_dry_run_delete_prints_the_batch_and_keeps_the_binding(lab, cli):
    a, b = lab.guest("a"), lab.guest("b")
    cli("nwfilter-binding-create", cli.binding_file(a, IP=a.ip))
    before = kernel(lab)
    out = cli("--dry-run", "nwfilter-binding-delete", a.port)
    assert kernel(lab) == before and spoof_dropped(lab, a, b)
    assert [r["portdev"] for r in json.loads(cli("nwfilter-binding-list", "--json").stdout)] == [
        a.port
    ]
    apply_batch(lab, out.stdout)
    by_hand = kernel(lab)
    assert not spoof_dropped(lab, a, b)
    Nwguard(lab, cli.tmp).call("nwfilter_reapply")  # the binding's rules back, as before
    assert kernel(lab) == before
    cli("nwfilter-binding-delete", a.port)
    assert kernel(lab) == by_hand


def test_one_cli_process_binds_quickly(lab, cli):
    a = lab.guest("a")
    f = cli.binding_file(a, IP=a.ip)
    cli("nwfilter-binding-list")  # the built-in filters are installed by the first run
    t0 = time.monotonic()
    cli("nwfilter-binding-create", f)
    took = time.monotonic() - t0
    assert took < 1.0, f"nwfilter-binding-create took {took:.3f}s (ip netns exec included)"
