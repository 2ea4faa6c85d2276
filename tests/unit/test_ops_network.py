"""Network operations against a recording host: ordering, rollback, refusals, bookkeeping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nwguard.backends.nft.render import nft_json
from nwguard.engine.context import Context
from nwguard.engine.networks import NetworkService
from nwguard.errors import ConflictError, HostError, InUseError, NotFoundError, XMLError
from nwguard.host.bridge import ALIAS_PREFIX
from nwguard.state.paths import Paths


class FakeHost:
    """Records every host effect; ``fail`` names a method that raises HostError."""

    def __init__(
        self, fail: str | None = None, devices: dict[str, str | None] | None = None
    ) -> None:
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []
        self.devices: dict[str, str | None] = dict(devices or {})
        self.sysctls: dict[str, str] = {"net/ipv4/ip_forward": "0"}
        self.tables: set[str] = set()

    def _rec(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        if self.fail == name:
            raise HostError(f"{name} exploded")

    def create_bridge(self, spec: Any) -> None:
        self._rec("create_bridge", spec.name)
        self.devices[spec.name] = ALIAS_PREFIX + spec.owner

    def delete_bridge(self, name: str) -> None:
        self._rec("delete_bridge", name)
        self.devices.pop(name, None)

    def device_names(self) -> set[str]:
        return set(self.devices)

    def device_alias(self, name: str) -> str | None:
        return self.devices.get(name)

    def routes_overlapping(self, subnets: list[str], ignore_dev: str) -> list[tuple[str, str]]:
        return []

    def set_sysctl(self, key: str, value: str) -> str | None:
        self._rec("set_sysctl", (key, value))
        old = self.sysctls.get(key)
        self.sysctls[key] = value
        return old

    def start_dnsmasq(self, net: Any, files: Any) -> int:
        self._rec("start_dnsmasq", net.name)
        files.dir.mkdir(parents=True, exist_ok=True)
        files.conf.write_text("x")
        return 4242

    def stop_dnsmasq(self, pid: int | None, files: Any) -> None:
        self._rec("stop_dnsmasq", pid)
        for p in files.all():
            p.unlink(missing_ok=True)

    firewalld_zones: tuple[str, ...] | None = None  # None: firewalld not running

    def firewalld_zone(self, name: str, mode: str, requested: str | None) -> str | None:
        from nwguard.host import firewalld

        if self.firewalld_zones is None:
            if requested:
                raise HostError(
                    f"zone {requested} requested for network {name} but firewalld is not active"
                )
            return None
        if requested:
            return requested
        if mode == "open":
            return None
        return (
            "libvirt"
            if "libvirt" in self.firewalld_zones
            else firewalld.choose_zone(name, mode, None)
        )

    def set_zone(self, bridge: str, zone: str) -> None:
        self._rec("set_zone", (bridge, zone))

    def remove_zone(self, bridge: str, zone: str) -> None:
        self._rec("remove_zone", (bridge, zone))

    def apply(self, batch: dict) -> None:
        self._rec("apply", [next(iter(c)) for c in batch["nftables"]][:3])
        for cmd in batch["nftables"]:
            verb, obj = next(iter(cmd.items()))
            if "table" in obj:
                (self.tables.add if verb == "add" else self.tables.discard)(obj["table"]["name"])


def _ops(tmp_path: Path, host: FakeHost, dry_run: bool = False) -> NetworkService:
    paths = Paths(tmp_path / "etc", tmp_path / "run")
    return NetworkService(Context(paths, dry_run=dry_run, network_host=host))  # type: ignore[arg-type]


NAT = (
    "<network><name>{name}</name><forward mode='nat'/>{bridge}"
    "<ip address='{net}.1' prefix='24'><dhcp><range start='{net}.10' end='{net}.20'/></dhcp></ip></network>"
)


def _xml(name: str = "n1", net: str = "10.50.0", bridge: str = "") -> str:
    return NAT.format(name=name, net=net, bridge=f"<bridge name='{bridge}'/>" if bridge else "")


def _leftovers(tmp_path: Path) -> list[str]:
    d = tmp_path / "run" / "network"
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def test_define_fills_uuid_bridge_and_mac_and_persists(tmp_path: Path) -> None:
    host = FakeHost(devices={"nwgbr0": None})
    net = _ops(tmp_path, host).net_define(_xml())
    assert net.uuid and net.mac and net.mac.startswith("52:54:00:")
    assert net.bridge.name == "nwgbr1"  # nwgbr0 is an existing device
    again = _ops(tmp_path, host).net_define(_xml())
    assert (again.uuid, again.bridge.name, again.mac) == (net.uuid, net.bridge.name, net.mac)


def test_start_runs_steps_in_order_and_destroy_reverses_them(tmp_path: Path) -> None:
    host = FakeHost()
    ops = _ops(tmp_path, host)
    ops.net_define(_xml())
    ops.net_start("n1")
    assert [c[0] for c in host.calls] == ["create_bridge", "start_dnsmasq", "set_sysctl", "apply"]
    assert ops.net_list()[0].state == "active"
    host.calls.clear()
    ops.net_destroy("n1")
    assert [c[0] for c in host.calls] == ["apply", "set_sysctl", "stop_dnsmasq", "delete_bridge"]
    assert host.sysctls["net/ipv4/ip_forward"] == "0" and not host.tables and not host.devices
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["create_bridge", "start_dnsmasq", "set_sysctl", "apply"])
def test_failure_halfway_rolls_back_everything_and_says_why(tmp_path: Path, step: str) -> None:
    host = FakeHost(fail=step)
    ops = _ops(tmp_path, host)
    ops.net_define(_xml())
    with pytest.raises(HostError) as info:
        ops.net_start("n1")
    assert f"{step} exploded" in str(info.value) and "rolled back" in str(info.value)
    assert not host.devices and not host.tables
    assert host.sysctls["net/ipv4/ip_forward"] == "0"
    assert _leftovers(tmp_path) == []
    assert ops.net_list(all=True)[0].state == "inactive"


def test_undefine_refused_while_active(tmp_path: Path) -> None:
    ops = _ops(tmp_path, FakeHost())
    ops.net_define(_xml())
    ops.net_start("n1")
    with pytest.raises(InUseError, match="is active; destroy it first"):
        ops.net_undefine("n1")
    ops.net_destroy("n1")
    ops.net_undefine("n1")
    with pytest.raises(NotFoundError):
        ops.net_info("n1")


def test_overlapping_subnets_are_refused(tmp_path: Path) -> None:
    ops = _ops(tmp_path, FakeHost())
    ops.net_define(_xml("a", "10.60.0"))
    with pytest.raises(ConflictError, match="overlaps subnet 10.60.0.0/24 of network 'a'"):
        ops.net_define(_xml("b", "10.60.0"))


def test_bridge_used_by_another_network_or_a_foreign_device_is_refused(tmp_path: Path) -> None:
    ops = _ops(tmp_path, FakeHost(devices={"eth7": None}))
    ops.net_define(_xml("a", "10.61.0", bridge="brx"))
    with pytest.raises(ConflictError, match="bridge name 'brx' is already used by network 'a'"):
        ops.net_define(_xml("b", "10.62.0", bridge="brx"))
    with pytest.raises(
        ConflictError, match="bridge name 'eth7' is already in use by an existing device"
    ):
        ops.net_define(_xml("c", "10.63.0", bridge="eth7"))


def test_same_name_other_uuid_is_refused(tmp_path: Path) -> None:
    ops = _ops(tmp_path, FakeHost())
    ops.net_define(_xml())
    other = _xml().replace(
        "<name>n1</name>", "<name>n1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>"
    )
    with pytest.raises(ConflictError, match="already exists with uuid"):
        ops.net_define(other)


def test_dry_run_returns_the_batch_and_changes_nothing(tmp_path: Path) -> None:
    host = FakeHost()
    _ops(tmp_path, host).net_define(_xml())
    result = _ops(tmp_path, host, dry_run=True).net_start("n1")
    batch = nft_json(result.batch)
    assert (
        not result.applied
        and batch
        and batch["nftables"][0]
        == {"add": {"table": {"family": "inet", "name": "nwguard_net_nwgbr0"}}}
    )
    assert host.calls == [] and _leftovers(tmp_path) == []


def test_a_start_that_died_halfway_is_cleaned_up_by_the_next_start(tmp_path: Path) -> None:
    host = FakeHost()
    ops = _ops(tmp_path, host)
    ops.net_define(_xml())
    ops.net_start("n1")
    status = tmp_path / "run" / "network" / "n1.json"
    status.write_text(status.read_text().replace('"active"', '"starting"'))
    ops.net_start("n1")
    assert [c[0] for c in host.calls].count("delete_bridge") == 1
    assert ops.net_list()[0].state == "active"


def test_edit_cannot_rename_and_invalid_xml_saves_nothing(tmp_path: Path) -> None:
    ops = _ops(tmp_path, FakeHost())
    ops.net_define(_xml())
    before = ops.net_edit_xml("n1")
    with pytest.raises(ConflictError, match="renaming is not supported"):
        ops.net_redefine("n1", before.replace("<name>n1<", "<name>n2<"))
    with pytest.raises(XMLError):
        ops.net_redefine("n1", before.replace("prefix='24'", "prefix='99'"))
    assert ops.net_edit_xml("n1") == before


def test_autostart_marker(tmp_path: Path) -> None:
    ops = _ops(tmp_path, FakeHost())
    ops.net_define(_xml())
    ops.net_autostart("n1")
    assert ops.net_info("n1")["Autostart"] is True
    assert ops.net_autostart_all() == ["n1"]
    ops.net_destroy("n1")
    ops.net_autostart("n1", enable=False)
    assert ops.net_list(all=True)[0].autostart is False


# ---------------------------------------------------------------------------- firewalld zones


def test_bridge_goes_into_the_libvirt_zone_when_firewalld_runs_and_leaves_it_on_destroy(
    tmp_path: Path,
) -> None:
    host = FakeHost()
    host.firewalld_zones = ("public", "libvirt")
    ops = _ops(tmp_path, host)
    ops.net_define(NAT.format(name="n1", bridge="<bridge name='nwgz0'/>", net="10.71.0"))
    ops.net_start("n1")
    names = [c[0] for c in host.calls]
    assert ("set_zone", ("nwgz0", "libvirt")) in host.calls
    assert names.index("set_zone") == names.index("create_bridge") + 1  # before dnsmasq and rules
    ops.net_destroy("n1")
    assert ("remove_zone", ("nwgz0", "libvirt")) in host.calls


def test_requested_zone_without_firewalld_fails_and_rolls_back(tmp_path: Path) -> None:
    host = FakeHost()
    ops = _ops(tmp_path, host)
    ops.net_define(
        NAT.format(name="n2", bridge="<bridge name='nwgz1' zone='trusted'/>", net="10.72.0")
    )
    with pytest.raises(
        HostError, match="zone trusted requested for network n2 but firewalld is not active"
    ):
        ops.net_start("n2")
    assert "nwgz1" not in host.devices
    assert [r.name for r in ops.net_list()] == []


def test_choose_zone_on_a_host_without_firewalld() -> None:
    from nwguard.host import firewalld

    if firewalld.running():
        pytest.skip("firewalld runs here")
    assert firewalld.choose_zone("default", "nat", None) is None
    with pytest.raises(
        HostError, match="zone libvirt requested for network default but firewalld is not active"
    ):
        firewalld.choose_zone("default", "nat", "libvirt")


def test_the_status_records_each_step_with_dnsmasq_explicit(tmp_path: Path) -> None:
    from nwguard.state.networks import NetworkState, NetworkStatusStore

    host = FakeHost()
    ops = _ops(tmp_path, host)
    ops.net_define(_xml())
    ops.net_start("n1")
    s = NetworkStatusStore(Paths(tmp_path / "etc", tmp_path / "run")).get("n1")
    assert s is not None and s.state is NetworkState.ACTIVE
    assert (s.bridge, s.dnsmasq_files, s.dnsmasq_pid, s.table) == (
        "nwgbr0",
        True,
        4242,
        "nwguard_net_nwgbr0",
    )
    assert s.sysctls == (("net/ipv4/ip_forward", "0"),)


def test_dnsmasq_whose_start_failed_is_still_cleaned_up(tmp_path: Path) -> None:
    host = FakeHost(fail="start_dnsmasq")
    ops = _ops(tmp_path, host)
    ops.net_define(_xml())
    with pytest.raises(HostError):
        ops.net_start("n1")
    assert ("stop_dnsmasq", None) in host.calls  # its files were written: no pid to stop


def test_a_network_started_before_versioned_status_files_is_destroyed(tmp_path: Path) -> None:
    """A status file of version 1 (dnsmasq_pid -1: files written, no process) still tears down."""
    import json

    host = FakeHost()
    ops = _ops(tmp_path, host)
    ops.net_define(_xml())
    ops.net_start("n1")
    path = tmp_path / "run" / "network" / "n1.json"
    d = json.loads(path.read_text())
    del d["version"], d["dnsmasq_files"], d["zone"]
    path.write_text(json.dumps({**d, "dnsmasq_pid": -1}))
    host.calls.clear()
    ops.net_destroy("n1")
    assert [c for c in host.calls if c[0] in ("stop_dnsmasq", "delete_bridge")] == [
        ("stop_dnsmasq", None), ("delete_bridge", "nwgbr0"),
    ]  # fmt: skip
    assert _leftovers(tmp_path) == []
