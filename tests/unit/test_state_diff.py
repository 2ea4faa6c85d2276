"""Kernel state and batches: invariants of sharing, add/remove symmetry, idempotence, order.

A :class:`KernelState` is the union of port contributions; :func:`diff` is the one batch
between two states and :func:`full` replaces nwguard's tables wholesale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from typing import Any

from nwguard.backends.nft import layout
from nwguard.backends.nft.render import counting_base, counts, ip_layer, nft_json, to_nft
from nwguard.backends.nft.render import obj as render_obj
from nwguard.builtin import builtin_filters
from nwguard.compile.kernel_state import KernelState, diff, full
from nwguard.compile.program import Contribution, PortCompiler, compile_port
from nwguard.ir.codec import encode
from nwguard.ir.ports import IpLayer, PortBatch
from nwguard.model.filter import Filter
from nwguard.resolve.resolver import resolve
from nwguard.xmlio.filter_xml import parse_filter

WEB_GUEST = """<filter name='web-guest' chain='root'>
  <filterref filter='clean-traffic'/>
  <rule action='accept' direction='in'><tcp dstportstart='80'/></rule>
  <rule action='accept' direction='out'><udp dstportstart='53'/></rule>
  <rule action='drop' direction='inout' priority='1000'><all/></rule>
</filter>"""


def library() -> dict[str, Filter]:
    fs = builtin_filters()
    f = parse_filter(WEB_GUEST)
    fs[f.name] = f
    return fs


def port(name: str, n: int, top: str = "clean-traffic", ips: int = 1) -> Contribution:
    params = {
        "MAC": (f"52:54:00:00:00:{n:02x}",),
        "IP": tuple(f"10.0.{n}.{i + 1}" for i in range(ips)),
    }
    return compile_port(name, resolve(library(), top, params))


def port_part(batch: PortBatch) -> PortBatch:
    """The batch without its IP-layer commands (the fixed layout's; tested apart)."""
    return PortBatch([c for c in batch.commands if not isinstance(c.obj, IpLayer)], batch.reset)


def objects(batch: PortBatch) -> Counter[tuple[str, ...]]:
    """Each command as (verb, kind, identity); set and map elements one by one; the sets
    created in nft syntax (typeof) count as added sets. IP-layer commands left out."""
    out: Counter[tuple[str, ...]] = Counter()
    rendered = to_nft(port_part(batch))
    for t in rendered.typeof_sets:
        out[("add", "set", t.family, t.name)] += 1
    for cmd in rendered.commands:
        ((verb, obj),) = cmd.items()
        ((kind, body),) = obj.items()
        if kind == "element":
            for e in body["elem"]:
                out[(verb, "element", body["name"], json.dumps(e, sort_keys=True))] += 1
        elif kind == "rule":
            out[(verb, "rule", body["chain"], json.dumps(body["expr"], sort_keys=True))] += 1
        else:
            out[(verb, kind, body.get("family", ""), body["name"])] += 1
    return out


def element_port(e: Any) -> str:
    """The port of a set element (``concat`` key) or of a dispatch-map entry."""
    return e["concat"][0] if isinstance(e, dict) else e[0]


def verbs(batch_json: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for cmd in batch_json["nftables"]:
        ((verb, obj),) = cmd.items()
        out.append((verb, next(iter(obj))))
    return out


# ----------------------------------------------------------------------------- add / remove


def test_add_then_remove_returns_to_the_empty_state() -> None:
    empty = KernelState()
    one = empty.with_port("vnet0", port("vnet0", 1, "web-guest"))
    assert one.chains and one.sets and one.refs
    gone = one.with_port("vnet0", None)
    assert (gone.chains, gone.sets, gone.ports, gone.refs) == ({}, {}, {}, {})
    assert nft_json(diff(empty, gone)) == {"nftables": []}


def test_removal_deletes_exactly_what_the_add_created() -> None:
    empty = KernelState()
    c = port("vnet0", 1, "web-guest")
    one = empty.with_port("vnet0", c)
    add = objects(diff(empty, one, {"vnet0"}))
    rm = objects(diff(one, empty, {"vnet0"}))
    assert {k[0] for k in add} == {"add"}
    assert {k[0] for k in rm} <= {"delete", "flush"}
    created = {k[1:] for k in add if k[1] in ("set", "chain", "map")}
    deleted = {k[1:] for k in rm if k[0] == "delete" and k[1] in ("set", "chain", "map")}
    assert created == deleted
    assert {k[1:] for k in rm if k[0] == "flush"} == {k for k in created if k[0] == "chain"}
    # Dispatch-map entries are deleted one for one; set elements go with their sets.
    vmaps = set(layout.DISPATCH)
    assert {k[1:] for k in add if k[1] == "element" and k[2] in vmaps} == {
        k[1:] for k in rm if k[1] == "element"
    }
    assert {k[2] for k in add if k[1] == "element" and k[2] not in vmaps} == set(c.sets)
    # each rule, and a counting rule before each drop or reject rule
    rules = [r for rs in c.chains.values() for r in rs]
    assert sum(n for k, n in add.items() if k[1] == "rule") == len(rules) + sum(map(counts, rules))


def test_a_second_port_of_the_same_filter_adds_only_elements_and_its_dispatch() -> None:
    one = KernelState().with_port("vnet0", port("vnet0", 1))
    c = port("vnet1", 2, ips=2)
    two = one.with_port("vnet1", c)
    add = objects(diff(one, two, {"vnet1"}))
    # Only elements (set elements and dispatch entries): no chain, no rule, no set.
    assert {k[:2] for k in add} == {("add", "element")}
    elements = {k for k in add if k[1] == "element"}
    assert {element_port(json.loads(k[3])) for k in elements} == {"vnet1"}
    vmap_entries = [k for k in add if k[2] in layout.DISPATCH]
    assert sorted(k[2] for k in vmap_entries) == ["l2i", "l2o"]
    back = two.with_port("vnet1", None)
    rm = objects(diff(two, back, {"vnet1"}))
    assert {k[:2] for k in rm} == {("delete", "element")}
    assert {k[1:] for k in rm if k[1] == "element"} == {k[1:] for k in elements}
    assert (back.chains, back.sets, back.refs) == (one.chains, one.sets, one.refs)


def test_changing_a_ports_addresses_changes_only_its_elements() -> None:
    old, new = port("vnet0", 1), port("vnet0", 7)
    before = KernelState().with_port("vnet0", old)
    after = before.with_port("vnet0", new)
    cmds = objects(diff(before, after, {"vnet0"}))
    elements = {k for k in cmds if k[1] == "element"}
    added = {k[2:] for k in elements if k[0] == "add"}
    deleted = {k[2:] for k in elements if k[0] == "delete"}
    assert added and deleted and not added & deleted
    assert all(name not in layout.DISPATCH for name, _ in added | deleted)
    assert not [k for k in cmds if k[1] in ("chain", "rule", "set")]  # no chain, rule or set


def test_rebinding_to_another_filter_swaps_chains_and_keeps_shared_ones() -> None:
    a = KernelState().with_port("vnet0", port("vnet0", 1))
    b = a.with_port("vnet0", port("vnet0", 1, "web-guest"))
    assert b.chains == KernelState().with_port("vnet0", port("vnet0", 1, "web-guest")).chains
    cmds = objects(diff(a, b, {"vnet0"}))
    added = {k[3] for k in cmds if k[:2] == ("add", "chain")}
    deleted = {k[3] for k in cmds if k[:2] == ("delete", "chain")}
    assert added == b.chains.keys() - a.chains.keys()
    assert deleted == a.chains.keys() - b.chains.keys()
    assert a.chains.keys() & b.chains.keys()  # clean-traffic's sub-chains stay


def test_from_ports_equals_adding_ports_one_by_one() -> None:
    ports = {
        f"vnet{n}": port(f"vnet{n}", n, "web-guest" if n % 2 else "clean-traffic") for n in range(4)
    }
    stepwise = KernelState()
    for name, c in ports.items():
        stepwise = stepwise.with_port(name, c)
    at_once = KernelState.from_ports(ports)
    assert (at_once.chains, at_once.sets, at_once.refs) == (
        stepwise.chains,
        stepwise.sets,
        stepwise.refs,
    )
    assert nft_json(diff(stepwise, at_once)) == {"nftables": []}


# ----------------------------------------------------------------------------- idempotence


def test_applying_the_same_state_twice_changes_nothing() -> None:
    s = KernelState.from_ports({"vnet0": port("vnet0", 1), "vnet1": port("vnet1", 2, "web-guest")})
    assert not diff(s, s)
    again = s.with_port("vnet0", port("vnet0", 1))  # recompiled, equal
    assert nft_json(diff(s, again, {"vnet0"})) == {"nftables": []}
    assert nft_json(diff(s, again)) == {"nftables": []}


def test_sharing_does_not_grow_with_the_number_of_ports() -> None:
    pc = PortCompiler(library())
    state = KernelState()
    sizes = []
    for n in range(1, 41):
        params = {"MAC": (f"52:54:00:00:01:{n:02x}",), "IP": (f"10.1.0.{n}",)}
        state = state.with_port(f"vnet{n}", pc.compile(f"vnet{n}", "web-guest", params))
        sizes.append(
            (len(state.chains), len(state.sets), sum(len(r) for r in state.chains.values()))
        )
    assert len(set(sizes)) == 1
    elements = state.elements()
    assert all(len(v) == 40 for v in elements.values())


# ----------------------------------------------------------------------------- full batch


def test_full_contains_the_base_layout_once_and_then_the_ports() -> None:
    s = KernelState.from_ports({"vnet0": port("vnet0", 1, "web-guest"), "vnet1": port("vnet1", 2)})
    batch = nft_json(full(s))["nftables"]
    base = [{"add": render_obj(o)} for o in layout.bridge_base()] + counting_base()
    for cmd in base:
        assert batch.count(cmd) == 1, cmd
    bridge, inet = layout.tables()
    for t in (bridge, inet):
        assert batch.index({"delete": {"table": {"family": t.family, "name": t.name}}}) < 6
        assert batch.count({"add": render_obj(t)}) == 1
    tail = nft_json(diff(KernelState(), s))["nftables"]
    assert tail[: len(ip_layer("add"))] == ip_layer("add")  # web-guest has IP-layer rules
    assert batch[len(batch) - len(tail) :] == tail
    assert len(batch) == 2 * len(layout.tables()) + 1 + len(base) + len(tail)


def test_full_of_the_empty_state_is_the_base_layout_only() -> None:
    batch = nft_json(full(KernelState()))["nftables"]
    base = layout.bridge_base()
    assert len(batch) == 2 * len(layout.tables()) + 1 + len(base) + len(counting_base())
    assert not any("element" in next(iter(c.values())) for c in batch)
    inet = layout.tables()[1]
    assert {"add": render_obj(inet)} not in batch  # made anew by an IpLayer only
    assert batch[3] == {"delete": {"table": {"family": inet.family, "name": inet.name}}}


def test_the_ip_layer_comes_with_the_first_port_that_needs_it_and_goes_with_the_last() -> None:
    l2 = KernelState().with_port("vnet0", port("vnet0", 1))
    assert not l2.ip_layer and not any(
        isinstance(c.obj, IpLayer) for c in diff(KernelState(), l2).commands
    )
    one = l2.with_port("vnet1", port("vnet1", 2, "web-guest"))
    assert one.ip_layer
    first = diff(l2, one, {"vnet1"}).commands
    assert [c for c in first if isinstance(c.obj, IpLayer)] == [first[0]]
    assert first[0].verb == "add"
    two = one.with_port("vnet2", port("vnet2", 3, "web-guest"))
    assert not any(isinstance(c.obj, IpLayer) for c in diff(one, two, {"vnet2"}).commands)
    back = two.with_port("vnet2", None)
    assert back.ip_ports == 1
    assert not any(isinstance(c.obj, IpLayer) for c in diff(two, back, {"vnet2"}).commands)
    last = diff(back, l2, {"vnet1"}).commands
    assert [c for c in last if isinstance(c.obj, IpLayer)] == [last[-1]]
    assert last[-1].verb == "delete"
    rebound = back.with_port("vnet1", port("vnet1", 2))  # to an Ethernet-layer filter
    assert not rebound.ip_layer and diff(back, rebound, {"vnet1"}).commands[-1].verb == "delete"
    assert KernelState.from_ports({"a": port("a", 1, "web-guest"), "b": port("b", 2)}).ip_ports == 1


def test_the_ip_layer_is_added_anew_and_deleted_whether_or_not_it_is_there() -> None:
    add, delete = ip_layer("add"), ip_layer("delete")
    inet = {"family": "inet", "name": "nwguard"}
    for cmds in (add, delete):  # an add before each delete: no error if it is missing
        assert cmds[:2] == [{"add": {"table": inet}}, {"delete": {"table": inet}}]
    chains = {c["add"]["chain"]["name"] for c in add if "chain" in c.get("add", {})}
    marks = {f"ct_{s}_{d}" for s in ("new", "established", "related")
             for d in ("original", "reply")} | {"ct_invalid"}  # fmt: skip
    hooks = {"ct_pre", "ct_out", "ct_fwd", "rej_fwd", "rej_in"}
    assert chains == set(layout.ip_layer_chains()) | hooks | marks
    flushed = {c["flush"]["chain"]["name"] for c in add if "flush" in c}
    assert flushed == set(layout.ip_layer_chains()) == {"pre_l4", "fwd_l4", "out_l4"}
    deleted = {c["delete"]["chain"]["name"] for c in delete if "chain" in c.get("delete", {})}
    assert deleted == flushed and not any("rule" in c.get("add", {}) for c in delete)


def test_batch_order_sets_chains_rules_elements_then_removals() -> None:
    s = KernelState.from_ports({"vnet0": port("vnet0", 1, "web-guest")})
    kinds = [k for v, k in verbs(nft_json(port_part(diff(KernelState(), s))))]
    rank = {"set": 0, "map": 0, "chain": 1, "rule": 2, "element": 3}
    assert kinds == sorted(kinds, key=rank.__getitem__)  # sets and jump targets exist first
    rm = verbs(nft_json(port_part(diff(s, KernelState()))))
    first_chain_flush = rm.index(("flush", "chain"))
    assert all(k == "element" for _, k in rm[:first_chain_flush])  # dispatch entries go first
    flushes = [i for i, c in enumerate(rm) if c == ("flush", "chain")]
    sets = [i for i, c in enumerate(rm) if c in (("delete", "set"), ("delete", "map"))]
    deletes = [i for i, c in enumerate(rm) if c == ("delete", "chain")]
    assert max(flushes) < min(sets)  # no rule uses a set any more
    assert max(sets) < min(deletes)  # no chain is deleted while a rule or a map jumps to it


def test_dispatch_entries_goto_the_ports_root_chains() -> None:
    c = port("vnet0", 1, "web-guest")
    batch = nft_json(port_part(diff(KernelState(), KernelState().with_port("vnet0", c))))[
        "nftables"
    ]
    entries = {
        cmd["add"]["element"]["name"]: cmd["add"]["element"]["elem"]
        for cmd in batch
        if "element" in cmd["add"] and cmd["add"]["element"]["name"] in layout.DISPATCH
    }
    assert entries == {
        role: [["vnet0", {"goto": {"target": chain}}]] for role, chain in c.dispatch.items()
    }
    assert set(entries) == {"l2o", "l2i", "l4o", "l4i"}


# ----------------------------------------------------------------------------- determinism

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_state_diff import full_batch_text
    sys.stdout.write(full_batch_text())
    """
)


def full_batch_text() -> str:
    ports = {
        "vnet0": port("vnet0", 1, "web-guest", ips=3),
        "vnet1": port("vnet1", 2),
        "tap-x": port("tap-x", 3, "web-guest"),
    }
    return json.dumps(nft_json(full(KernelState.from_ports(ports))))


def test_compilation_is_deterministic_within_a_process() -> None:
    assert full_batch_text() == full_batch_text()
    a = port("vnet0", 1, "web-guest", ips=2)
    b = port("vnet0", 1, "web-guest", ips=2)
    assert [(n, encode(r)) for n, r in a.chains.items()] == [
        (n, encode(r)) for n, r in b.chains.items()
    ]
    assert json.dumps(a.elements) == json.dumps(b.elements)


def test_compilation_is_deterministic_across_processes_and_hash_seeds() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    outputs = set()
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", _SCRIPT.format(tests=here)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(run.stdout)
    assert outputs == {full_batch_text()}


def test_with_ports_is_with_port_one_after_another() -> None:
    """``with_ports`` (the daemon's start recompiles 10,000 ports: one copy of the state,
    not one per port) makes the state ``with_port`` makes step by step."""
    start = KernelState.from_ports({f"vnet{n}": port(f"vnet{n}", n) for n in range(4)})
    changes = {
        "vnet1": None,
        "vnet2": port("vnet2", 2, "web-guest"),
        "vnet9": port("vnet9", 9, "web-guest"),
        "vnet0": None,
    }
    stepwise = start
    for name, c in changes.items():
        stepwise = stepwise.with_port(name, c)
    at_once = start.with_ports(changes)
    assert (at_once.chains, at_once.sets, at_once.refs, at_once.ip_ports) == (
        stepwise.chains, stepwise.sets, stepwise.refs, stepwise.ip_ports,
    )  # fmt: skip
    assert set(at_once.ports) == {"vnet2", "vnet3", "vnet9"} and at_once.ip_ports == 2
    assert set(start.ports) == {"vnet0", "vnet1", "vnet2", "vnet3"}  # unchanged
    assert nft_json(diff(stepwise, at_once)) == {"nftables": []}
