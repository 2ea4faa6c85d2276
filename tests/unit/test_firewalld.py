"""firewalld zones against the recording stand-in: zone choice, the backend check, errors,
destroy after firewalld forgot the bridge, following reloads, the zone files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import nullcontext
from pathlib import Path

import pytest

from nwguard.daemon.firewalld import FirewalldWatcher, rezone
from nwguard.daemon.networks import firewall_batches
from nwguard.engine.context import Context
from nwguard.engine.networks import HostNetworking, NetworkService
from nwguard.errors import (
    ConflictError,
    HostError,
    NotFoundError,
    PermissionDeniedError,
)
from nwguard.host import firewalld
from nwguard.host.firewalld import RecordingFirewalld, choose_zone
from nwguard.state.networks import NetworkState, NetworkStatusStore
from nwguard.state.paths import Paths

from .test_ops_network import NAT, FakeHost


class ZoneHost(FakeHost):
    """The recording host, its zone steps the real ones over a recording firewalld."""

    def __init__(self, fw: RecordingFirewalld, fail: str | None = None) -> None:
        super().__init__(fail=fail)
        self.real = HostNetworking(firewalld=fw)

    def firewalld_zone(self, name: str, mode: str, requested: str | None) -> str | None:
        return self.real.firewalld_zone(name, mode, requested)

    def set_zone(self, bridge: str, zone: str) -> None:
        self._rec("set_zone", (bridge, zone))
        self.real.set_zone(bridge, zone)

    def remove_zone(self, bridge: str, zone: str) -> None:
        self._rec("remove_zone", (bridge, zone))
        self.real.remove_zone(bridge, zone)


def _ops(tmp_path: Path, host: FakeHost) -> NetworkService:
    paths = Paths(tmp_path / "etc", tmp_path / "run")
    return NetworkService(Context(paths, network_host=host))  # type: ignore[arg-type]


def _nat(name: str, br: str, extra: str = "") -> str:
    return NAT.format(name=name, bridge=f"<bridge name='{br}'{extra}/>", net="10.80.0")


# ---------------------------------------------------------------------- zone choice


def test_zone_choice_follows_the_spec_for_each_mode() -> None:
    fw = RecordingFirewalld(zones=("public", "libvirt"))
    assert choose_zone("n", "nat", None, fw) == "libvirt"
    assert choose_zone("n", "isolated", None, fw) == "libvirt"
    assert choose_zone("n", "open", None, fw) is None
    assert choose_zone("n", "route", None, fw) == "libvirt"  # no routed zone: libvirt
    fw.zone_names.add("libvirt-routed")
    assert choose_zone("n", "route", None, fw) == "libvirt"  # zone without its policy
    fw.policy_names.add("libvirt-routed-out")
    assert choose_zone("n", "route", None, fw) == "libvirt-routed"


def test_a_requested_zone_is_used_in_every_mode_and_must_exist() -> None:
    fw = RecordingFirewalld(zones=("public", "trusted"))
    assert choose_zone("n", "open", "trusted", fw) == "trusted"
    with pytest.raises(NotFoundError, match="zone nosuch requested for network n does not exist"):
        choose_zone("n", "nat", "nosuch", fw)


def test_no_firewalld_no_zone_unless_one_is_requested() -> None:
    fw = RecordingFirewalld(active=False)
    assert choose_zone("n", "nat", None, fw) is None
    with pytest.raises(HostError, match="zone libvirt requested for network n but firewalld is"):
        choose_zone("n", "nat", "libvirt", fw)


def test_missing_libvirt_zone_with_the_nftables_backend_is_an_error_that_says_why() -> None:
    fw = RecordingFirewalld(zones=("public",), backend="nftables")
    with pytest.raises(HostError) as err:
        choose_zone("net1", "nat", None, fw)
    text = str(err.value)
    assert "(nftables backend) has no 'libvirt' zone: its default zone would reject" in text
    assert "DHCP, DNS and forwarding of network net1's guests" in text
    assert "nwguard firewalld-install" in text


def test_missing_libvirt_zone_with_the_iptables_backend_is_an_error_too() -> None:
    """Deviation from older libvirt (a warning): nwguard's rules are nftables tables, they
    cannot accept ahead of firewalld's iptables chains (the kernel test shows the default
    zone rejecting DNS with the iptables backend)."""
    fw = RecordingFirewalld(zones=("public",), backend="iptables")
    with pytest.raises(HostError) as err:
        choose_zone("net1", "nat", None, fw)
    assert "(iptables backend) has no 'libvirt' zone" in str(err.value)
    assert "cannot accept ahead of firewalld's iptables chains" in str(err.value)


# ---------------------------------------------------------------------- start and destroy


def test_start_puts_the_bridge_into_the_zone_and_destroy_takes_it_out(tmp_path: Path) -> None:
    fw = RecordingFirewalld()
    ops = _ops(tmp_path, ZoneHost(fw))
    ops.net_define(_nat("n1", "nwgf0"))
    ops.net_start("n1")
    assert fw.members == {"nwgf0": "libvirt"}
    ops.net_destroy("n1")
    assert fw.members == {}


def test_start_refused_by_the_backend_check_leaves_nothing(tmp_path: Path) -> None:
    fw = RecordingFirewalld(zones=("public",), backend="nftables")
    host = ZoneHost(fw)
    ops = _ops(tmp_path, host)
    ops.net_define(_nat("n1", "nwgf0"))
    with pytest.raises(
        HostError, match="set firewalld zone failed: firewalld 1.3.3 .nftables backend. has no"
    ):
        ops.net_start("n1")
    assert host.devices == {} and host.tables == set() and fw.members == {}
    assert not any(c[0] in ("start_dnsmasq", "apply") for c in host.calls)
    assert ops.net_list(all=True)[0].state == "inactive"


def test_a_named_zone_that_does_not_exist_fails_the_start_and_rolls_back(tmp_path: Path) -> None:
    fw = RecordingFirewalld(zones=("public", "libvirt"))
    host = ZoneHost(fw)
    ops = _ops(tmp_path, host)
    ops.net_define(_nat("n1", "nwgf0", " zone='nosuch'"))
    with pytest.raises(NotFoundError, match="zone nosuch requested for network n1 does not exist"):
        ops.net_start("n1")
    assert host.devices == {} and ops.net_list() == []


def test_destroy_finishes_when_firewalld_restarted_and_forgot_the_bridge(tmp_path: Path) -> None:
    fw = RecordingFirewalld()
    ops = _ops(tmp_path, ZoneHost(fw))
    ops.net_define(_nat("n1", "nwgf0"))
    ops.net_start("n1")
    fw.restart()
    ops.net_destroy("n1")  # was: "firewalld refused to take the bridge out … UNKNOWN_INTERFACE"
    assert ops.net_list(all=True)[0].state == "inactive"
    assert fw.calls[-1] == ("remove_interface", ("libvirt", "nwgf0"))


def test_destroy_finishes_when_firewalld_has_stopped(tmp_path: Path) -> None:
    fw = RecordingFirewalld()
    ops = _ops(tmp_path, ZoneHost(fw))
    ops.net_define(_nat("n1", "nwgf0"))
    ops.net_start("n1")
    fw.active = False
    ops.net_destroy("n1")
    assert ops.net_list(all=True)[0].state == "inactive"


def test_a_destroy_that_fails_halfway_leaves_nothing_for_the_daemon_to_restore(
    tmp_path: Path,
) -> None:
    fw = RecordingFirewalld()
    host = ZoneHost(fw, fail="delete_bridge")
    ops = _ops(tmp_path, host)
    ops.net_define(_nat("n1", "nwgf0"))
    ops.net_start("n1")
    paths = ops.ctx.paths
    assert list(firewall_batches(paths)) == ["nwguard_net_nwgf0"]
    with pytest.raises(HostError, match="bridge: delete_bridge exploded"):
        ops.net_destroy("n1")
    status = NetworkStatusStore(paths).get("n1")
    assert status is not None and status.state is NetworkState.STARTING
    assert (status.table, status.zone, status.dnsmasq_pid, status.bridge) == (
        None, None, None, "nwgf0",
    )  # fmt: skip
    assert firewall_batches(paths) == {}  # was: nwguardd re-created the destroyed table
    host.fail = None
    ops.net_destroy("n1")
    assert NetworkStatusStore(paths).get("n1") is None and host.devices == {}


# ---------------------------------------------------------------------- following firewalld


def test_rezone_puts_back_only_what_firewalld_lost(tmp_path: Path) -> None:
    fw = RecordingFirewalld(zones=("public", "trusted", "libvirt"))
    ops = _ops(tmp_path, ZoneHost(fw))
    ops.net_define(_nat("n1", "nwgf0"))
    ops.net_define(
        NAT.format(name="n2", bridge="<bridge name='nwgf1' zone='trusted'/>", net="10.82.0")
    )
    ops.net_start("n1")
    ops.net_start("n2")
    paths = ops.ctx.paths
    assert rezone(paths, fw) == []
    fw.restart()
    assert sorted(rezone(paths, fw)) == ["nwgf0→libvirt", "nwgf1→trusted"]
    assert fw.members == {"nwgf0": "libvirt", "nwgf1": "trusted"}
    ops.net_destroy("n1")
    fw.restart()
    assert rezone(paths, fw) == ["nwgf1→trusted"]  # a destroyed network stays destroyed


def test_the_watcher_rezones_and_asks_for_a_check_on_reload_and_restart(tmp_path: Path) -> None:
    fw = RecordingFirewalld()
    ops = _ops(tmp_path, ZoneHost(fw))
    ops.net_define(_nat("n1", "nwgf0"))
    ops.net_start("n1")
    checks: list[str] = []
    w = FirewalldWatcher(ops.ctx.paths, lambda: fw, nullcontext, checks.append)
    w.handle("connected")
    assert checks == []  # start-up with every bridge in place: nothing to do
    fw.restart()
    w.handle("started")
    assert fw.members == {"nwgf0": "libvirt"} and checks == ["firewalld started"]
    w.handle("reloaded")
    assert checks == ["firewalld started", "firewalld reloaded"]
    w.handle("stopped")
    assert len(checks) == 2


# ---------------------------------------------------------------------- errors


class _Reply:
    def __init__(self, name: str, text: str) -> None:
        self.name, self.data = name, (text,)


@pytest.mark.parametrize(
    ("name", "text", "cls", "word"),
    [
        ("org.fedoraproject.FirewallD1.Exception", "INVALID_ZONE: nosuch", NotFoundError, None),
        ("org.fedoraproject.FirewallD1.Exception", "ZONE_CONFLICT: br0", ConflictError, None),
        ("org.fedoraproject.FirewallD1.NotAuthorizedException", "x", PermissionDeniedError, None),
        ("org.fedoraproject.FirewallD1.Exception", "UNKNOWN_INTERFACE: br0", HostError,
         "UNKNOWN_INTERFACE"),
    ],
)  # fmt: skip
def test_firewalld_errors_map_to_nwguard_codes(
    name: str, text: str, cls: type[Exception], word: str | None
) -> None:
    err = firewalld._error("do it", _Reply(name, text))
    assert type(err) is (firewalld.FirewalldCallError if word else cls)
    assert isinstance(err, cls) and str(err).startswith("firewalld refused to do it: ")
    assert getattr(err, "word", None) == word


def test_no_bus_means_no_firewalld(tmp_path: Path) -> None:
    fw = firewalld.DBusFirewalld(f"unix:path={tmp_path}/nobus")
    assert fw.running() is False
    with pytest.raises(HostError, match="cannot reach the D-Bus bus"):
        fw.zones()


# ---------------------------------------------------------------------- zone files


def test_the_libvirt_zone_accepts_forwarding_and_lets_guests_reach_only_the_listed_services() -> (
    None
):
    docs = {k: ET.fromstring(v) for k, v in firewalld.zone_documents().items()}
    zone = docs["zones/libvirt.xml"]
    assert zone.get("target") == "ACCEPT"
    assert [s.get("name") for s in zone.iter("service")] == list(firewalld.HOST_SERVICES)
    assert [p.get("value") for p in zone.iter("protocol")] == ["icmp", "ipv6-icmp"]
    (rule,) = zone.iter("rule")
    assert rule.get("priority") == "32767" and [c.tag for c in rule] == ["reject"]
    pol = {k.split("/")[1][:-4]: v for k, v in docs.items() if k.startswith("policies/")}
    flows = {
        n: (p.get("target"), p.find("ingress-zone").get("name"), p.find("egress-zone").get("name"))  # type: ignore[union-attr]
        for n, p in pol.items()
    }
    assert flows == {
        "libvirt-routed-in": ("ACCEPT", "ANY", "libvirt-routed"),
        "libvirt-routed-out": ("ACCEPT", "libvirt-routed", "ANY"),
        "libvirt-to-host": ("REJECT", "libvirt-routed", "HOST"),
    }
    assert [s.get("name") for s in pol["libvirt-to-host"].iter("service")] == list(
        firewalld.HOST_SERVICES
    )


def test_install_zones_writes_once_keeps_an_admin_edit_and_reloads_a_running_firewalld(
    tmp_path: Path,
) -> None:
    fw = RecordingFirewalld()
    first = firewalld.install_zones(tmp_path, fw)
    assert [w for _, w in first] == ["written"] * 5 + ["reloaded"]
    assert (tmp_path / "zones/libvirt.xml").is_file()
    assert (tmp_path / "policies/libvirt-to-host.xml").is_file()
    again = firewalld.install_zones(tmp_path, fw)
    assert [w for _, w in again] == ["up to date"] * 5 and fw.calls == [("reload", ())]
    (tmp_path / "zones/libvirt.xml").write_text("<zone/>")
    kept = dict(firewalld.install_zones(tmp_path, fw))
    assert kept[str(tmp_path / "zones/libvirt.xml")].startswith("kept")
    assert (tmp_path / "zones/libvirt.xml").read_text() == "<zone/>"
    forced = dict(firewalld.install_zones(tmp_path, RecordingFirewalld(active=False), force=True))
    assert forced[str(tmp_path / "zones/libvirt.xml")] == "written" and "firewalld" not in forced
