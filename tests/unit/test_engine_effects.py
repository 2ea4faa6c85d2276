"""The engine's effects go through its interfaces: the executor, the host, learned addresses
in, learning requests out. Unit tests stand in for all of them; nothing here touches a kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.compile.learning import LearningRequest
from nwguard.engine.ports import Engine
from nwguard.errors import ApplyError, NotFoundError
from nwguard.ir.ports import DispatchEntries, PortBatch, SlotElements
from nwguard.state.paths import Paths
from nwguard.xmlio.binding_xml import parse_binding

MAC = "52:54:00:12:34:56"


class Host:
    """Ports that exist are listed; counts the sysctl calls."""

    def __init__(self, ports: set[str]) -> None:
        self.ports, self.sysctl_calls = ports, 0

    def port_exists(self, name: str) -> bool:
        return name in self.ports

    def ensure_bridge_netfilter(self, hooked: object = (), released: object = ()) -> None:
        self.sysctl_calls += 1


def binding(port: str = "vnet0", ip: str | None = "10.0.0.5") -> str:
    param = f"<parameter name='IP' value='{ip}'/>" if ip else ""
    return f"""<filterbinding><owner><name>vm</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner>
      <portdev name='{port}'/><mac address='{MAC}'/>
      <filterref filter='clean-traffic'>{param}</filterref></filterbinding>"""


def engine(
    tmp_path: Path, kernel: RecordingExecutor, host: Host, **kw: object
) -> tuple[Engine, list[LearningRequest]]:
    requests: list[LearningRequest] = []
    eng = Engine(
        Paths(tmp_path / "etc", tmp_path / "run"),
        executor=kernel,
        host=host,
        on_learning=requests.append,
        **kw,  # type: ignore[arg-type]
    )
    return eng, requests


def test_a_bind_sends_one_port_batch_and_asks_the_host(tmp_path: Path) -> None:
    kernel, host = RecordingExecutor(), Host({"vnet0", "vnet1"})
    eng, _ = engine(tmp_path, kernel, host)
    eng.bind(parse_binding(binding("vnet0")), builtin_filters())
    eng.bind(parse_binding(binding("vnet1", "10.0.0.6")), builtin_filters())
    first, second = kernel.batches
    assert isinstance(first, PortBatch) and first.reset  # nothing applied yet: all of it
    assert isinstance(second, PortBatch) and not second.reset
    # the second port of the same filter adds only elements and dispatch entries
    assert {type(c.obj) for c in second.commands} == {SlotElements, DispatchEntries}
    assert host.sysctl_calls == 2


def test_a_port_the_host_does_not_have_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng, _ = engine(tmp_path, kernel, Host(set()))
    with pytest.raises(NotFoundError, match="port 'vnet0' does not exist"):
        eng.bind(parse_binding(binding()), builtin_filters())
    assert kernel.batches == []


def test_a_port_waiting_for_its_ip_sends_its_learning_request_after_the_commit(
    tmp_path: Path,
) -> None:
    kernel = RecordingExecutor()
    eng, requests = engine(tmp_path, kernel, Host({"vnet0"}))
    eng.bind(parse_binding(binding(ip=None)), builtin_filters())
    assert requests == [LearningRequest("vnet0", MAC, "any", "vnet0")]
    assert len(kernel.batches) == 1


def test_no_learning_request_when_the_kernel_refuses_or_in_a_dry_run(tmp_path: Path) -> None:
    refusing = RecordingExecutor(fail=2)  # the diff and the full retry
    eng, requests = engine(tmp_path, refusing, Host({"vnet0"}))
    with pytest.raises(ApplyError):
        eng.bind(parse_binding(binding(ip=None)), builtin_filters())
    assert requests == []
    dry, dry_requests = engine(tmp_path / "dry", RecordingExecutor(), Host(set()), dry_run=True)
    result = dry.bind(parse_binding(binding(ip=None)), builtin_filters())
    assert dry_requests == [] and not result.applied and result.batch.reset


def test_learned_addresses_are_an_input(tmp_path: Path) -> None:
    kernel = RecordingExecutor()
    eng, requests = engine(tmp_path, kernel, Host({"vnet0"}), learned=lambda b: ("10.0.0.77",))
    eng.bind(parse_binding(binding(ip=None)), builtin_filters())
    assert requests == []  # nothing to learn: the port has its address
    elements = [
        k for c in kernel.batches[0].commands if isinstance(c.obj, SlotElements) for k in c.obj.keys
    ]
    assert ("vnet0", "10.0.0.77") in elements
