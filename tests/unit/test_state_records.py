"""Typed records: JSON round trips, and the files written before versions still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nwguard.daemon import dhcpsnoop as S
from nwguard.daemon.networks import firewall_batches
from nwguard.engine.interfaces import INTERFACE, InterfaceRecord
from nwguard.state.filters import MARKER_FORMAT, BuiltinsMarker
from nwguard.state.learned import LEARNING, LearnedStore, Learning, Lease
from nwguard.state.networks import NETWORK_STATUS, NetworkState, NetworkStatus, NetworkStatusStore
from nwguard.state.paths import Paths
from nwguard.state.persist import SchemaVersionError

text = st.text(max_size=12)
name = st.text(min_size=1, max_size=12)
opt_text = st.none() | text
ip = st.ip_addresses(v=4).map(str)
floats = st.floats(allow_nan=False, allow_infinity=False)
pids = st.none() | st.integers(1, 1 << 22)


@st.composite
def statuses(draw: st.DrawFn) -> NetworkStatus:
    pid = draw(pids)
    return NetworkStatus(
        draw(text), draw(opt_text), draw(text), draw(text), draw(floats),
        draw(st.sampled_from(NetworkState)), draw(opt_text), draw(opt_text),
        pid is not None or draw(st.booleans()), pid, draw(opt_text),
        tuple(draw(st.dictionaries(text, text, max_size=3)).items()),
    )  # fmt: skip


interfaces = st.builds(
    InterfaceRecord, text, text, opt_text, opt_text, text, st.tuples(ip) | st.just(()),
    opt_text, st.booleans(),
)  # fmt: skip
leases = st.builds(Lease, ip, st.none() | floats, st.none() | ip)
learnings = st.builds(
    Learning, name, text, st.sampled_from(["any", "dhcp"]), name,
    st.lists(ip, max_size=2).map(tuple), st.none() | st.integers(1, 1 << 20),
    st.lists(leases, max_size=3).map(tuple),
)  # fmt: skip
events = st.one_of(
    st.builds(S.Learned, ip),
    st.builds(S.Acked, ip, st.none() | ip, st.none() | floats),
    st.builds(S.Released, ip),
    st.builds(S.Expired, st.lists(ip, max_size=3).map(tuple)),
    st.builds(S.Ignored, ip, st.none() | ip, text),
)


def _through_a_file(fmt, record):  # type: ignore[no-untyped-def]
    """What a reader gets back of ``record`` (JSON text, as on disk)."""
    return fmt.decode(fmt.encode(record), "<test>")


@given(statuses())
def test_network_status_round_trip(s: NetworkStatus) -> None:
    assert NetworkStatus.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert _through_a_file(NETWORK_STATUS, s) == s


@given(interfaces)
def test_interface_record_round_trip(r: InterfaceRecord) -> None:
    assert InterfaceRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert _through_a_file(INTERFACE, r) == r


@given(learnings)
def test_learning_round_trip(e: Learning) -> None:
    assert _through_a_file(LEARNING, e) == e


@given(events)
def test_learning_event_round_trip(ev: S.SnoopEvent) -> None:
    d = json.loads(json.dumps(ev.to_json()))
    assert d["kind"] == ev.kind and S.event_from_json(d) == ev


@given(st.lists(text, max_size=3).map(tuple))
def test_builtins_marker_round_trip(names: tuple[str, ...]) -> None:
    assert _through_a_file(MARKER_FORMAT, BuiltinsMarker(names)) == BuiltinsMarker(names)


def test_a_pid_needs_the_dnsmasq_files() -> None:
    with pytest.raises(ValueError, match="without its files"):
        NetworkStatus("n", None, "", "", 0.0, dnsmasq_pid=7)
    with pytest.raises(ValueError, match="without its files"):
        NetworkStatus("n", None, "", "", 0.0, dnsmasq_files=True, dnsmasq_pid=-1)


# ----------------------------------------------------------------------------- files of today


def _v1_status(pid: int | None, **extra: object) -> dict[str, object]:
    """A status file as nwguard wrote it before versions (``dnsmasq_pid`` -1: files only)."""
    return {
        "name": "n1", "uuid": "u", "state": "active", "bridge": "nwgbr0", "dnsmasq_pid": pid,
        "dnsmasq_dir": "/run/nwguard/network/n1", "table": "nwguard_net_nwgbr0",
        "sysctls": {"net/ipv4/ip_forward": "0"}, "xml": "<network/>", "started": 1.5, **extra,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("pid", "files", "want_pid"), [(None, False, None), (-1, True, None), (4242, True, 4242)]
)
def test_version_1_network_status_is_migrated(
    tmp_path: Path, pid: int | None, files: bool, want_pid: int | None
) -> None:
    store = NetworkStatusStore(Paths(tmp_path, tmp_path))
    store.path("n1").parent.mkdir(parents=True)
    store.path("n1").write_text(json.dumps(_v1_status(pid, zone="libvirt"), indent=2))
    s = store.get("n1")
    assert s == NetworkStatus(
        "n1", "u", "<network/>", "/run/nwguard/network/n1", 1.5, NetworkState.ACTIVE, "nwgbr0",
        "libvirt", files, want_pid, "nwguard_net_nwgbr0", (("net/ipv4/ip_forward", "0"),),
    )  # fmt: skip
    assert store.names() == {"n1"}


def test_a_newer_network_status_is_refused_naming_the_file(tmp_path: Path) -> None:
    store = NetworkStatusStore(Paths(tmp_path, tmp_path))
    store.path("n1").parent.mkdir(parents=True)
    store.path("n1").write_text(json.dumps({"version": 3, **_v1_status(None)}))
    with pytest.raises(
        SchemaVersionError, match=r"n1\.json: network status file of schema version 3"
    ):
        store.get("n1")


def test_the_daemon_skips_an_unreadable_network_status(tmp_path: Path, caplog) -> None:
    paths = Paths(tmp_path, tmp_path)
    d = paths.network_state_dir
    d.mkdir(parents=True)
    (d / "bad.json").write_text(json.dumps({"version": 3, **_v1_status(None)}))
    net = "<network><name>n1</name><bridge name='nwgbr0'/><ip address='10.70.0.1' prefix='24'/></network>"
    (d / "n1.json").write_text(json.dumps(_v1_status(None, xml=net)))  # version 1, active
    (d / "n2.json").write_text(json.dumps(_v1_status(None, name="n2", xml=net, state="starting")))
    batches = firewall_batches(paths)
    assert list(batches) == ["nwguard_net_nwgbr0"] and batches["nwguard_net_nwgbr0"]["nftables"]
    assert "network bad: cannot read its status" in caplog.text


def test_an_interface_file_of_today_reads(tmp_path: Path) -> None:
    d = tmp_path / "ifaces"
    d.mkdir()
    (d / "vnet0.json").write_text(json.dumps({
        "dev": "vnet0", "type": "bridge", "bridge": "br0", "network": None,
        "mac": "52:54:00:00:00:01", "ips": ["192.0.2.5"], "filter": "clean-traffic", "created": True,
    }))  # fmt: skip
    assert INTERFACE.decode((d / "vnet0.json").read_bytes(), d / "vnet0.json") == InterfaceRecord(
        "vnet0", "bridge", "br0", None, "52:54:00:00:00:01", ("192.0.2.5",), "clean-traffic", True
    )


def test_a_learned_file_of_today_reads_and_a_damaged_one_is_learned_again(tmp_path: Path) -> None:
    store = LearnedStore(Paths(tmp_path, tmp_path))
    store.dir.mkdir()
    (store.dir / "vnet0.json").write_text(json.dumps({
        "port": "vnet0", "mac": "52:54:00:00:00:01", "mode": "dhcp", "iface": "vnet0",
        "servers": ["192.0.2.1"], "ifindex": 7,
        "leases": [{"ip": "192.0.2.50", "expiry": None, "server": "192.0.2.1"}],
    }, sort_keys=True))  # fmt: skip
    entry = store.get("vnet0")
    assert entry == Learning("vnet0", "52:54:00:00:00:01", "dhcp", "vnet0", ("192.0.2.1",), 7,
                             (Lease("192.0.2.50", None, "192.0.2.1"),))  # fmt: skip
    (store.dir / "vnet1.json").write_text('{"port": "vnet1"}')
    assert store.get("vnet1") is None and list(store.all()) == ["vnet0"]
    (store.dir / "vnet2.json").write_text('{"version": 2}')
    with pytest.raises(SchemaVersionError, match="vnet2.json"):
        store.get("vnet2")


def test_iface_list_and_detach_read_the_record_attach_writes(tmp_path: Path) -> None:
    from nwguard.engine.context import Context
    from nwguard.engine.interfaces import InterfaceService

    # no filter to unbind and no network to ask: the services it would call are not needed
    ops = InterfaceService(Context(Paths(tmp_path / "etc", tmp_path / "run")), None, None)  # type: ignore[arg-type]
    rec = InterfaceRecord(
        "vnet0", "ethernet", None, None, "52:54:00:00:00:01", ("192.0.2.5",), None, False
    )
    ops._iface_store().put("vnet0", rec)
    assert ops.iface_list() == [rec]
    ops.iface_detach("vnet0")  # no filter, a device nwguard did not create: the record only
    assert ops.iface_list() == []
