"""The engine's applied state on disk: what a later process loads is what was committed."""

from __future__ import annotations

from pathlib import Path

from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.compile.program import PortCompiler
from nwguard.compile.kernel_state import KernelState, diff
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
    assert {p: c.elements for p, c in loaded.ports.items()} == {p: c.elements for p, c in state.ports.items()}
    assert diff(loaded, state).commands == []  # nothing to send: the loaded state is the kernel's


def test_binding_a_port_does_not_rewrite_the_shared_templates(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    one = KernelState().with_port("vnet1", _contrib(pc, 1))
    save_state(tmp_path, one)
    before = (tmp_path / "templates.json").stat().st_mtime_ns, (tmp_path / "templates.json").read_bytes()
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

    def ensure_bridge_netfilter(self) -> None:
        pass
