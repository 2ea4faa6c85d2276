"""The engine's applied state on disk: what a later process loads is what was committed."""

from __future__ import annotations

import json
from pathlib import Path

from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.compile.kernel_state import KernelState, diff
from nwguard.compile.program import PortCompiler
from nwguard.engine.ports import load_state, save_state


def _contrib(pc: PortCompiler, i: int):
    params = {"MAC": (f"52:54:00:00:00:{i:02x}",), "IP": (f"10.0.0.{i}",)}
    return pc.compile(f"vnet{i}", "clean-traffic", params)


def test_saved_state_loads_back_equal(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    state = KernelState()
    for i in range(1, 4):
        state = state.with_port(f"vnet{i}", _contrib(pc, i))
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    assert loaded.chains == state.chains and loaded.sets == state.sets and loaded.refs == state.refs
    assert {p: c.elements for p, c in loaded.ports.items()} == {
        p: c.elements for p, c in state.ports.items()
    }
    assert diff(loaded, state).commands == []  # nothing to send: the loaded state is the kernel's


def test_binding_a_port_does_not_rewrite_the_shared_templates(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    one = KernelState().with_port("vnet1", _contrib(pc, 1))
    save_state(tmp_path, one)
    before = (
        (tmp_path / "templates.json").stat().st_mtime_ns,
        (tmp_path / "templates.json").read_bytes(),
    )
    two = one.with_port("vnet2", _contrib(pc, 2))
    save_state(tmp_path, two, {"vnet2"}, templates_changed=False)
    assert (tmp_path / "templates.json").read_bytes() == before[1]
    assert load_state(tmp_path).chains == two.chains


def test_a_change_with_nothing_to_do_does_not_touch_the_kernel(tmp_path: Path) -> None:
    # Bug: redefining a filter with no port bound sent nwguard's whole (empty) layout to the
    # kernel, so `nwfilter-define` as root left empty nwguard tables in the host's ruleset.
    from nwguard.engine.ports import Engine
    from nwguard.state.paths import Paths

    kernel = RecordingExecutor()
    eng = Engine(Paths(tmp_path / "etc", tmp_path / "run"), executor=kernel, host=NoHost())
    result = eng.rebuild(builtin_filters(), {"clean-traffic"})
    assert kernel.batches == [] and not result.applied
    assert not (tmp_path / "run" / "applied").exists()


class NoHost:
    """A host on which every port exists and sysctls are not touched."""

    def port_exists(self, name: str) -> bool:
        return True

    def ensure_bridge_netfilter(self, hooked: object = (), released: object = ()) -> None:
        pass


def test_an_applied_state_of_the_old_version_is_recompiled_and_replaced_whole(
    tmp_path: Path,
) -> None:
    """State of version 2 (nftables JSON) is not read: the engine compiles the bound ports
    again and its next change replaces the tables whole, so no port loses its rules."""
    from nwguard.compile.kernel_state import full
    from nwguard.engine.ports import Engine
    from nwguard.state.paths import Paths
    from nwguard.xmlio.binding_xml import parse_binding

    paths = Paths(tmp_path / "etc", tmp_path / "run")
    kernel = RecordingExecutor()
    first = Engine(paths, executor=kernel, host=NoHost())
    for i in (1, 2):
        first.bind(parse_binding(_binding(f"vnet{i}", i)), builtin_filters())
    applied = paths.state_dir / "applied" / "templates.json"
    applied.write_text('{"version": 2, "chains": {}, "sets": {}}')
    again = Engine(paths, executor=kernel, host=NoHost())
    assert set(again.applied().ports) == {"vnet1", "vnet2"}
    assert again.applied().chains == first.applied().chains
    result = again.bind(parse_binding(_binding("vnet3", 3)), builtin_filters())
    assert result.batch.reset and result.batch == kernel.batches[-1]
    assert set(again.applied().ports) == {"vnet1", "vnet2", "vnet3"}
    assert load_state(paths.state_dir / "applied") is not None  # saved in the new version
    assert full(load_state(paths.state_dir / "applied")) == full(again.applied())


def _journal(directory: Path) -> list[Path]:
    return sorted(directory.glob("ports.*.log"))


def test_a_change_of_a_few_ports_is_journalled_and_loads_back(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    one = KernelState().with_port("vnet1", _contrib(pc, 1))
    save_state(tmp_path, one)
    snapshot = (tmp_path / "ports.json").read_bytes()
    two = one.with_port("vnet2", _contrib(pc, 2))
    save_state(tmp_path, two, {"vnet2"}, templates_changed=False)
    three = two.with_port("vnet1", None)
    save_state(tmp_path, three, {"vnet1"}, templates_changed=False)
    assert (tmp_path / "ports.json").read_bytes() == snapshot  # only the journal grew
    [log] = _journal(tmp_path)
    assert len(log.read_text().splitlines()) == 2
    loaded = load_state(tmp_path)
    assert set(loaded.ports) == {"vnet2"} and loaded.refs == three.refs
    assert diff(loaded, three).commands == []


def test_a_torn_journal_line_is_skipped_and_the_next_one_is_not_glued_onto_it(
    tmp_path: Path,
) -> None:
    pc = PortCompiler(builtin_filters())
    one = KernelState().with_port("vnet1", _contrib(pc, 1))
    save_state(tmp_path, one)
    two = one.with_port("vnet2", _contrib(pc, 2))
    save_state(tmp_path, two, {"vnet2"}, templates_changed=False)
    [log] = _journal(tmp_path)
    whole = log.read_bytes()
    log.write_bytes(whole[: len(whole) // 2])  # a writer killed mid-line
    assert set(load_state(tmp_path).ports) == {"vnet1"}
    three = two.with_port("vnet3", _contrib(pc, 3))
    save_state(tmp_path, three, {"vnet3"}, templates_changed=False)
    assert set(load_state(tmp_path).ports) == {"vnet1", "vnet3"}


def test_a_damaged_snapshot_makes_the_state_unusable(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    save_state(tmp_path, KernelState().with_port("vnet1", _contrib(pc, 1)))
    assert load_state(tmp_path) is not None
    (tmp_path / "ports.json").write_text("{not json")
    assert load_state(tmp_path) is None  # the engine recompiles the bound ports


def test_the_journal_becomes_a_new_snapshot_when_it_outgrows_the_old_one(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    state = KernelState().with_port("vnet1", _contrib(pc, 1))
    save_state(tmp_path, state)
    first = json.loads((tmp_path / "ports.json").read_text())["log"]
    for i in range(2, 200):
        state = state.with_port(f"vnet{i}", _contrib(pc, i % 250))
        save_state(tmp_path, state, {f"vnet{i}"}, templates_changed=False)
    now = json.loads((tmp_path / "ports.json").read_text())["log"]
    assert now != first  # compacted at least once
    assert all(p.name == f"ports.{now}.log" for p in _journal(tmp_path))  # the old one gone
    journalled = sum(len(p.read_text().splitlines()) for p in _journal(tmp_path))
    assert journalled < 198
    loaded = load_state(tmp_path)
    assert set(loaded.ports) == set(state.ports) and diff(loaded, state).commands == []


def test_the_files_per_port_of_version_3_are_replaced_by_the_snapshot(tmp_path: Path) -> None:
    from nwguard.engine.ports import Engine
    from nwguard.state.paths import Paths
    from nwguard.xmlio.binding_xml import parse_binding

    paths = Paths(tmp_path / "etc", tmp_path / "run")
    applied = paths.state_dir / "applied"
    first = Engine(paths, executor=RecordingExecutor(), host=NoHost())
    for i in (1, 2):
        first.bind(parse_binding(_binding(f"vnet{i}", i)), builtin_filters())
    (applied / "templates.json").write_text('{"version": 3, "chains": {}, "sets": {}}')
    (applied / "ports").mkdir()
    (applied / "ports" / "vnet1.json").write_text('{"chains": []}')
    kernel = RecordingExecutor()
    again = Engine(paths, executor=kernel, host=NoHost())
    again.bind(parse_binding(_binding("vnet3", 3)), builtin_filters())
    assert kernel.batches[-1].reset  # the whole state, recompiled
    assert not (applied / "ports").exists()
    assert set(load_state(applied).ports) == {"vnet1", "vnet2", "vnet3"}


def _binding(port: str, i: int) -> str:
    return f"""<filterbinding><owner><name>vm{i}</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a5{i}</uuid></owner>
      <portdev name='{port}'/><mac address='52:54:00:00:00:0{i}'/>
      <filterref filter='clean-traffic'><parameter name='IP' value='10.0.0.{i}'/></filterref></filterbinding>"""
