"""Binding and unbinding many ports at once: one transaction, all or nothing (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.api import Client
from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.compile.kernel_state import full
from nwguard.engine.ports import Engine, load_state
from nwguard.errors import ApplyError, ConflictError, NotFoundError
from nwguard.ir.ports import PortBatch
from nwguard.state.paths import Paths
from nwguard.xmlio.binding_xml import parse_binding


class Host:
    def __init__(self, ports: set[str]) -> None:
        self.ports = ports

    def port_exists(self, name: str) -> bool:
        return name in self.ports

    def ensure_bridge_netfilter(self, hooked: object = (), released: object = ()) -> None:
        pass


def xml(i: int, filt: str = "clean-traffic") -> str:
    return f"""<filterbinding><owner><name>vm{i}</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-{i:012x}</uuid></owner>
      <portdev name='vnet{i}'/><mac address='52:54:00:00:{i >> 8:02x}:{i & 255:02x}'/>
      <filterref filter='{filt}'><parameter name='IP' value='10.0.{i >> 8}.{i & 255}'/></filterref>
      </filterbinding>"""


PORTS = {f"vnet{i}" for i in range(10)}


def engine(tmp_path: Path, kernel: RecordingExecutor) -> Engine:
    return Engine(Paths(tmp_path / "etc", tmp_path / "run"), executor=kernel, host=Host(PORTS))


def files(tmp_path: Path) -> set[str]:
    return {f.stem for f in (tmp_path / "run" / "nwfilter-binding").glob("*.xml")}


def bindings(*ids: int) -> list:
    return [parse_binding(xml(i)) for i in ids]


def test_many_ports_are_bound_in_one_transaction(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng = engine(tmp_path, kernel)
    eng.bind(bindings(0)[0], builtin_filters())
    result = eng.bind_many(bindings(1, 2, 3), builtin_filters())
    assert result.applied and len(kernel.batches) == 2 and kernel.batches[-1] is result.batch
    assert files(tmp_path) == {"vnet0", "vnet1", "vnet2", "vnet3"}
    loaded = load_state(tmp_path / "run" / "applied")
    assert set(loaded.ports) == {"vnet0", "vnet1", "vnet2", "vnet3"}
    assert full(loaded) == full(eng.applied())
    # the same as binding them one by one
    one = RecordingExecutor()
    other = Engine(Paths(tmp_path / "b" / "etc", tmp_path / "b" / "run"), one, host=Host(PORTS))
    for b in bindings(0, 1, 2, 3):
        other.bind(b, builtin_filters())
    assert full(other.applied()) == full(eng.applied())


def test_many_ports_are_unbound_in_one_transaction(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng = engine(tmp_path, kernel)
    eng.bind_many(bindings(0, 1, 2, 3), builtin_filters())
    result = eng.unbind_many(["vnet1", "vnet3"])
    assert result.applied and len(kernel.batches) == 2
    assert files(tmp_path) == {"vnet0", "vnet2"}
    assert set(load_state(tmp_path / "run" / "applied").ports) == {"vnet0", "vnet2"}


def test_a_refused_bulk_bind_leaves_the_kernel_state_and_files_as_they_were(
    tmp_path: Path,
) -> None:
    kernel = RecordingExecutor()
    eng = engine(tmp_path, kernel)
    eng.bind(bindings(0)[0], builtin_filters())
    before = full(load_state(tmp_path / "run" / "applied"))
    kernel.fail = 2  # the diff and the whole state: both refused
    with pytest.raises(ApplyError):
        eng.bind_many(bindings(1, 2, 3), builtin_filters())
    assert files(tmp_path) == {"vnet0"}
    assert full(load_state(tmp_path / "run" / "applied")) == before
    assert set(eng.applied().ports) == {"vnet0"}
    assert eng.bind_many(bindings(1, 2), builtin_filters()).applied  # and it works afterwards
    assert files(tmp_path) == {"vnet0", "vnet1", "vnet2"}


def test_a_refused_bulk_unbind_keeps_every_binding(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng = engine(tmp_path, kernel)
    eng.bind_many(bindings(0, 1, 2), builtin_filters())
    kernel.fail = 2
    with pytest.raises(ApplyError):
        eng.unbind_many(["vnet0", "vnet1"])
    assert files(tmp_path) == {"vnet0", "vnet1", "vnet2"}
    assert set(load_state(tmp_path / "run" / "applied").ports) == {"vnet0", "vnet1", "vnet2"}


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (xml(1), ConflictError, "port 'vnet1' is given twice"),
        (xml(0), ConflictError, "port 'vnet0' already has a filter binding"),
        (xml(1).replace("vnet1", "nosuch1"), NotFoundError, "port 'nosuch1' does not exist"),
        (xml(9, "no-such-filter"), NotFoundError, "filter 'no-such-filter' does not exist"),
    ],
)
def test_one_bad_binding_refuses_them_all_before_anything_is_sent(
    tmp_path: Path, extra: str, error: type[Exception], message: str
) -> None:
    kernel = RecordingExecutor()
    eng = engine(tmp_path, kernel)
    eng.bind(bindings(0)[0], builtin_filters())
    with pytest.raises(error, match=message):
        eng.bind_many([*bindings(1, 2), parse_binding(extra)], builtin_filters())
    assert len(kernel.batches) == 1 and files(tmp_path) == {"vnet0"}


def test_one_unknown_port_refuses_the_bulk_unbind(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng = engine(tmp_path, kernel)
    eng.bind_many(bindings(0, 1), builtin_filters())
    with pytest.raises(NotFoundError, match="no filter binding for port 'vnet5'"):
        eng.unbind_many(["vnet0", "vnet5"])
    assert len(kernel.batches) == 1 and files(tmp_path) == {"vnet0", "vnet1"}


def test_the_facade_binds_and_unbinds_many(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    c = Client.open(str(tmp_path / "etc"), str(tmp_path / "run"))
    eng = c.ctx.engine()
    eng.executor, eng.host = kernel, Host(PORTS)
    bound = c.nwfilter_binding_create_many([xml(i) for i in range(5)])
    assert bound.applied and kernel.batches == [bound.batch]
    assert isinstance(bound.batch, PortBatch) and bound.batch.reset  # the first change: all
    assert [b.portdev for b in c.nwfilter_binding_list()] == [f"vnet{i}" for i in range(5)]
    gone = c.nwfilter_binding_delete_many(["vnet1", "vnet2"])
    assert gone.applied and kernel.batches == [bound.batch, gone.batch]
    assert [b.portdev for b in c.nwfilter_binding_list()] == ["vnet0", "vnet3", "vnet4"]


def test_a_dry_run_bulk_bind_sends_and_keeps_nothing(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng = Engine(
        Paths(tmp_path / "etc", tmp_path / "run"), executor=kernel, host=Host(set()), dry_run=True
    )
    result = eng.bind_many(bindings(0, 1), builtin_filters())
    assert not result.applied and result.batch.commands
    assert kernel.batches == [] and files(tmp_path) == set()
