"""The CNI plugin's protocol: environment and stdin in, stdout and exit status out, against
a recording executor (no kernel, no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nwguard.api import Client
from nwguard.backends import RecordingExecutor
from nwguard.cli import cni as cni_cli
from nwguard.cni import attachment as A
from nwguard.cni.plugin import Effects, run
from nwguard.ir.ports import DispatchEntries, PortBatch

NETNS = "/run/netns/netns-1b2c"
CID = "f3a9c0ffee"
MAC = "0a:58:0a:58:00:02"


def prev_result(version: str = "1.0.0", port: str = "veth1a2b3c4d") -> dict[str, Any]:
    """What the bridge plugin prints: the bridge, the host-side veth, the container side."""
    ip: dict[str, Any] = {"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 2}
    if version == "0.4.0":
        ip["version"] = "4"
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "cni-podman9", "mac": "ee:dd:cc:bb:aa:00"},
            {"name": port, "mac": "ee:dd:cc:bb:aa:01"},
            {"name": "eth0", "mac": MAC, "sandbox": NETNS},
        ],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }


class Host:
    def __init__(self, ports: set[str]) -> None:
        self.ports = ports

    def port_exists(self, name: str) -> bool:
        return name in self.ports

    def ensure_bridge_netfilter(self, hooked=(), released=()) -> None:
        pass


class Kernel:
    """Stands in for the kernel's dispatch maps: replays the dispatch entries recorded."""

    def __init__(self, executor: RecordingExecutor) -> None:
        self.executor = executor

    def dispatch(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for batch in self.executor.batches:
            assert isinstance(batch, PortBatch)
            for cmd in batch.commands:
                if isinstance(cmd.obj, DispatchEntries):
                    entries = out.setdefault(cmd.obj.role, {})
                    for port, chain in cmd.obj.entries:
                        if cmd.verb == "add":
                            entries[port] = chain
                        else:
                            entries.pop(port, None)
        return out


class World:
    """A client on temporary directories whose engine applies to a recording executor."""

    def __init__(self, tmp_path: Path, ports: set[str] | None = None) -> None:
        self.executor = RecordingExecutor()
        self.dirs = {"configDir": str(tmp_path / "etc"), "stateDir": str(tmp_path / "run")}
        self.host = Host({"veth1a2b3c4d"} if ports is None else ports)
        self.client = Client.open(str(tmp_path / "etc"), str(tmp_path / "run"))
        eng = self.client.ctx.engine()
        eng.executor, eng.host = self.executor, self.host
        self.kernel = Kernel(self.executor)
        self.bridge_ports = {"veth1a2b3c4d", "vethother"}
        self.effects = Effects(
            connect=lambda c, s: self.client,
            is_bridge_port=lambda n: n in self.bridge_ports,
            kernel=lambda: self.kernel,
        )

    def call(
        self, command: str, config: dict[str, Any] | None = None, **env: str
    ) -> tuple[Any, int]:
        full_env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": CID,
            "CNI_NETNS": NETNS,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin",
            **env,
        }
        full_env = {k: v for k, v in full_env.items() if v}
        stdin = json.dumps({**self.dirs, **(config if config is not None else conf())}).encode()
        out, status = run(full_env, stdin, self.effects)
        return (json.loads(out) if out else None), status

    def bindings(self) -> list[Any]:
        return self.client.nwfilter_binding_list()


def conf(version: str = "1.0.0", prev: bool = True, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "cniVersion": version,
        "name": "nwg",
        "type": "nwguard",
        "filter": "clean-traffic",
        **extra,
    }
    if prev:
        c["prevResult"] = prev_result(version)
    return c


# ----------------------------------------------------------------------------- VERSION


@pytest.mark.parametrize("stdin", [b"", b"not json", b'{"cniVersion": "0.1.0"}'])
def test_version_answers_from_any_stdin(stdin: bytes) -> None:
    out, status = run({"CNI_COMMAND": "VERSION"}, stdin)
    assert status == 0
    assert json.loads(out) == {"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}


# ----------------------------------------------------------------------------- ADD


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_add_binds_the_veth_and_prints_prev_result_unchanged(tmp_path, version) -> None:
    w = World(tmp_path)
    out, status = w.call("ADD", conf(version))
    assert status == 0
    assert out == prev_result(version)
    [b] = w.bindings()
    assert (b.portdev, b.mac, b.filterref.filter) == ("veth1a2b3c4d", MAC, "clean-traffic")
    assert b.params()["IP"] == ("10.88.0.2",) and b.params()["MAC"] == (MAC,)
    assert b.owner_name == f"cni:{CID}:eth0" == A.owner_name(CID, "eth0")
    assert b.owner_uuid == A.owner_uuid(CID, "eth0")
    assert set(w.kernel.dispatch()["l2o"]) == {"veth1a2b3c4d"}


def test_add_takes_params_from_the_config(tmp_path) -> None:
    w = World(tmp_path)
    params = {"CTRL_IP_LEARNING": "none", "DHCPSERVER": ["10.88.0.1", "10.88.0.254"]}
    _, status = w.call("ADD", conf(params=params))
    assert status == 0
    [b] = w.bindings()
    assert b.params()["DHCPSERVER"] == ("10.88.0.1", "10.88.0.254")
    assert b.params()["CTRL_IP_LEARNING"] == ("none",) and b.params()["IP"] == ("10.88.0.2",)


def test_add_without_prev_result_is_error_7_and_binds_nothing(tmp_path) -> None:
    w = World(tmp_path)
    out, status = w.call("ADD", conf(prev=False))
    assert status == 1
    assert set(out) == {"cniVersion", "code", "msg"}
    assert out["code"] == 7 and out["cniVersion"] == "1.0.0" and "prevResult" in out["msg"]
    assert w.bindings() == [] and w.executor.batches == []


def test_a_failed_add_exits_1_with_nwguards_error_and_leaves_nothing(tmp_path) -> None:
    w = World(tmp_path)
    out, status = w.call("ADD", conf(filter="no-such-filter"))
    assert status == 1
    assert out["code"] == 100 and out["details"] == "not-found" and "no-such-filter" in out["msg"]
    assert w.bindings() == [] and w.executor.batches == []


def test_add_on_a_missing_veth_fails(tmp_path) -> None:
    w = World(tmp_path, ports=set())
    out, status = w.call("ADD")
    assert (status, out["code"]) == (1, 100) and "veth1a2b3c4d" in out["msg"]
    assert w.bindings() == []


def test_add_finds_the_container_interface_by_netns_and_ifname(tmp_path) -> None:
    w = World(tmp_path)
    out, status = w.call("ADD", CNI_NETNS="/run/netns/another")
    assert (status, out["code"]) == (1, 7) and "eth0" in out["msg"]
    out, status = w.call("ADD", CNI_IFNAME="eth1")
    assert (status, out["code"]) == (1, 7)
    assert w.bindings() == []


def test_add_needs_one_host_side_bridge_port(tmp_path) -> None:
    w = World(tmp_path)
    w.bridge_ports = set()  # neither host interface is plugged into a bridge
    out, status = w.call("ADD")
    assert (status, out["code"]) == (1, 7) and "host-side" in out["msg"]
    w.bridge_ports = {"veth1a2b3c4d"}
    assert w.call("ADD")[1] == 0


def test_a_repeated_add_keeps_one_binding(tmp_path) -> None:
    w = World(tmp_path, ports={"veth1a2b3c4d", "vethother"})
    assert w.call("ADD")[1] == 0
    c = conf()
    c["prevResult"] = prev_result(port="vethother")
    assert w.call("ADD", c)[1] == 0
    assert [b.portdev for b in w.bindings()] == ["vethother"]


def test_add_replaces_a_stale_plugin_binding_on_the_port(tmp_path) -> None:
    w = World(tmp_path)
    assert w.call("ADD", CNI_CONTAINERID="gone")[1] == 0
    assert w.call("ADD")[1] == 0
    assert [b.owner_name for b in w.bindings()] == [f"cni:{CID}:eth0"]


def test_add_refuses_a_port_bound_by_someone_else(tmp_path) -> None:
    w = World(tmp_path)
    b = A.binding_for(A.Attachment(CID, "eth0", "veth1a2b3c4d", MAC), "clean-traffic", {})
    from nwguard.model.binding import FilterBinding
    from nwguard.xmlio.binding_xml import write_binding

    vm = FilterBinding("vm1", b.owner_uuid, b.portdev, b.mac, b.filterref)
    w.client.nwfilter_binding_create(write_binding(vm))
    out, status = w.call("ADD")
    assert (status, out["code"], out["details"]) == (1, 100, "conflict")
    assert [x.owner_name for x in w.bindings()] == ["vm1"]


# ----------------------------------------------------------------------------- DEL


def test_del_unbinds_and_is_idempotent(tmp_path) -> None:
    w = World(tmp_path)
    assert w.call("ADD")[1] == 0
    assert w.call("DEL") == (None, 0)
    assert w.bindings() == [] and w.kernel.dispatch()["l2o"] == {}
    assert w.call("DEL") == (None, 0)


def test_del_needs_neither_prev_result_nor_netns_nor_the_veth(tmp_path) -> None:
    w = World(tmp_path)
    assert w.call("ADD")[1] == 0
    w.host.ports.clear()  # the bridge plugin removed the veth already
    assert w.call("DEL", conf(prev=False), CNI_NETNS="") == (None, 0)
    assert w.bindings() == []


def test_del_leaves_other_containers_alone(tmp_path) -> None:
    w = World(tmp_path)
    assert w.call("ADD")[1] == 0
    assert w.call("DEL", CNI_CONTAINERID="other") == (None, 0)
    assert len(w.bindings()) == 1


def test_del_with_nothing_to_undo_asks_nobody(tmp_path) -> None:
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": CID, "CNI_IFNAME": "eth0"}
    stdin = json.dumps({**conf(prev=False), "stateDir": str(tmp_path / "run")}).encode()
    assert run(env, stdin, Effects(_no_client, lambda n: True, _no_kernel)) == ("", 0)


def test_del_with_nothing_to_undo_loads_no_engine(tmp_path) -> None:
    code = (
        "import json, sys; from nwguard.cni.plugin import run; "
        f"print(json.dumps([run({{'CNI_COMMAND': 'DEL', 'CNI_CONTAINERID': 'c', "
        f"'CNI_IFNAME': 'eth0'}}, json.dumps({{'cniVersion': '1.0.0', 'filter': 'f', "
        f"'stateDir': {str(tmp_path)!r}}}).encode()), "
        "sorted(m for m in sys.modules if m.startswith('nwguard'))]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result, modules = json.loads(proc.stdout)
    assert result == ["", 0]
    assert "nwguard.engine" not in modules and "nwguard.model" not in modules
    assert "nwguard.cni.fast" in modules


# ----------------------------------------------------------------------------- light paths


def test_the_light_binding_xml_is_the_model_binding() -> None:
    from nwguard.xmlio.binding_xml import parse_binding

    att = A.Attachment(CID, "eth0", "veth1", MAC, ("10.88.0.2", "10.88.0.3"), ("fd00::2",))
    params = {"CTRL_IP_LEARNING": "none", "DHCPSERVER": ["10.88.0.1", "10.88.0.254"]}
    assert parse_binding(A.binding_xml(att, "clean-traffic", params)) == A.binding_for(
        att, "clean-traffic", params
    )
    explicit = parse_binding(A.binding_xml(att, "clean-traffic", {"IP": "10.88.0.9"}))
    assert explicit.params()["IP"] == ("10.88.0.9",)  # the configuration wins


@pytest.mark.parametrize("euid", [0, 1000])
@pytest.mark.parametrize(
    ("given", "env"),
    [
        ((None, None), {}),
        (("/c", "/s"), {}),
        ((None, None), {"NWGUARD_CONFIG_DIR": "/ec", "NWGUARD_STATE_DIR": "/es"}),
        ((None, None), {"XDG_RUNTIME_DIR": "/run/user/1000"}),
    ],
)
def test_fast_dirs_are_the_paths_defaults(monkeypatch, euid, given, env) -> None:
    from nwguard.cni import fast
    from nwguard.state.paths import Paths

    for var in ("NWGUARD_CONFIG_DIR", "NWGUARD_STATE_DIR", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    paths = Paths.from_env(*given)
    assert fast.dirs(*given) == (str(paths.config_dir), str(paths.state_dir))
    assert paths.binding_dir == paths.state_dir / fast.BINDING_DIR
    assert (paths.socket.name, paths.socket_ro.name) == (fast.SOCKET, fast.SOCKET_RO)


def test_fast_requests_are_the_daemon_protocols() -> None:
    from nwguard.cni import fast
    from nwguard.daemon import protocol as P

    for method, args in [("daemon.info", ()), ("nwfilter_binding_delete", ("veth1",))]:
        assert fast.request(7, method, args) == P.request(7, method, args)
        assert method in P.KINDS


def test_maybe_bound_finds_the_owner_in_the_binding_files(tmp_path) -> None:
    from nwguard.cni import fast
    from nwguard.xmlio.binding_xml import write_binding

    owner = A.owner_name(CID, "eth0")
    assert fast.maybe_bound(str(tmp_path), owner) is False  # no binding directory
    (tmp_path / fast.BINDING_DIR).mkdir()
    other = A.binding_for(A.Attachment("other", "eth0", "veth2", MAC), "clean-traffic", {})
    (tmp_path / fast.BINDING_DIR / "veth2.xml").write_text(write_binding(other))
    assert fast.maybe_bound(str(tmp_path), owner) is False
    mine = A.binding_for(A.Attachment(CID, "eth0", "veth1", MAC), "clean-traffic", {})
    (tmp_path / fast.BINDING_DIR / "veth1.xml").write_text(write_binding(mine))
    assert fast.maybe_bound(str(tmp_path), owner) is True
    assert fast.maybe_bound(str(tmp_path), A.owner_name("x", "e&h")) is True  # may be escaped


def test_no_daemon_or_a_stale_socket_means_in_process(monkeypatch, tmp_path) -> None:
    import socket

    from nwguard.cni import fast

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("NWGUARD_NO_DAEMON", raising=False)
    cfg, st = str(tmp_path / "etc"), str(tmp_path / "run")
    assert fast.connect(cfg, st) is None  # no socket
    os.mkdir(st)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.path.join(st, fast.SOCKET))
    stale.close()  # the file stays, nobody listens: a daemon that died
    assert fast.connect(cfg, st) is None


def test_is_bridge_port_asks_the_kernel() -> None:
    from nwguard.cni import fast

    assert fast.is_bridge_port("lo") is False  # exists, has no master
    assert fast.is_bridge_port("nwg-no-such") is False


# ----------------------------------------------------------------------------- CHECK


def test_check_passes_on_a_bound_container_and_fails_once_its_rules_are_gone(tmp_path) -> None:
    w = World(tmp_path)
    assert w.call("ADD")[1] == 0
    assert w.call("CHECK") == (None, 0)
    w.executor.batches.clear()  # the kernel lost the rules (someone flushed the table)
    out, status = w.call("CHECK")
    assert (status, out["code"]) == (1, 101) and "dispatch" in out["msg"]


def test_check_fails_without_a_binding_or_with_other_addresses(tmp_path) -> None:
    w = World(tmp_path)
    out, status = w.call("CHECK")
    assert (status, out["code"]) == (1, 101) and "no filter binding" in out["msg"]
    assert w.call("ADD")[1] == 0
    c = conf()
    c["prevResult"]["ips"][0]["address"] = "10.88.0.3/16"
    out, status = w.call("CHECK", c)
    assert (status, out["code"]) == (1, 101) and "differs" in out["msg"]


def test_check_without_prev_result_is_error_7(tmp_path) -> None:
    out, status = World(tmp_path).call("CHECK", conf(prev=False))
    assert (status, out["code"]) == (1, 7)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("env", "stdin", "code"),
    [
        ({"CNI_COMMAND": "ADD"}, json.dumps(conf()).encode(), 4),  # no CNI_CONTAINERID
        ({"CNI_COMMAND": "GC"}, json.dumps(conf()).encode(), 4),
        ({}, json.dumps(conf()).encode(), 4),
        (
            {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": CID,
                "CNI_IFNAME": "eth0",
                "CNI_NETNS": NETNS,
            },
            b"{not json",
            6,
        ),
        (
            {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": CID,
                "CNI_IFNAME": "eth0",
                "CNI_NETNS": NETNS,
            },
            json.dumps(conf("0.3.1")).encode(),
            1,
        ),
        (
            {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": CID,
                "CNI_IFNAME": "eth0",
                "CNI_NETNS": NETNS,
            },
            json.dumps({**conf(), "filter": ""}).encode(),
            7,
        ),
        (
            {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": CID,
                "CNI_IFNAME": "eth0",
                "CNI_NETNS": NETNS,
            },
            json.dumps({**conf(), "params": {"IP": 5}}).encode(),
            7,
        ),
    ],
)
def test_errors_are_cni_error_objects_with_exit_1(env, stdin, code) -> None:
    out, status = run(env, stdin, Effects(_no_client, lambda n: True, _no_kernel))
    err = json.loads(out)
    assert status == 1 and err["code"] == code and set(err) == {"cniVersion", "code", "msg"}
    assert err["msg"]


def _no_client(config_dir: str | None, state_dir: str | None) -> Client:
    raise AssertionError("an invalid request must not reach nwguard")


def _no_kernel() -> A.KernelView:
    raise AssertionError("an invalid request must not read the kernel")


# ----------------------------------------------------------------------------- the executable


def test_cni_install_writes_a_plugin_that_answers_version(tmp_path) -> None:
    target = cni_cli.install(tmp_path / "bin")
    assert target == tmp_path / "bin" / "nwguard" and os.access(target, os.X_OK)
    proc = subprocess.run(
        [str(target)],
        input=b"",
        capture_output=True,
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == run({"CNI_COMMAND": "VERSION"}, b"")[0]
    assert json.loads(proc.stdout)["supportedVersions"] == ["0.4.0", "1.0.0"]
    cni_cli.install(tmp_path / "bin")  # its own file: replaced without --force


def test_the_executable_reports_errors_on_stdout_with_exit_1(tmp_path) -> None:
    target = cni_cli.install(tmp_path / "bin")
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": CID, "CNI_IFNAME": "eth0", "CNI_NETNS": NETNS}
    proc = subprocess.run(
        [str(target)], input=json.dumps(conf(prev=False)).encode(), capture_output=True,
        env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 7


def test_cni_install_refuses_to_replace_a_foreign_file(tmp_path) -> None:
    import click

    (tmp_path / "nwguard").write_text("#!/bin/sh\n")
    with pytest.raises(click.ClickException):
        cni_cli.install(tmp_path)
    text = cni_cli.install(tmp_path, force=True).read_text()
    assert text.startswith("#!/bin/sh\n") and f"exec {sys.executable} -IS -c " in text


# ----------------------------------------------------------------------------- QEMU helper


def test_qemu_args_open_the_tap_without_a_script_and_double_commas() -> None:
    from nwguard.cli.qemu import interface_model, qemu_args

    assert qemu_args("vnet0", MAC, "e1000", "n1") == [
        "-netdev", "tap,id=n1,ifname=vnet0,script=no,downscript=no",
        "-device", f"e1000,netdev=n1,mac={MAC}",
    ]  # fmt: skip
    assert qemu_args("v,1", MAC)[1] == "tap,id=net0,ifname=v,,1,script=no,downscript=no"
    assert qemu_args("v1", MAC)[3].startswith("virtio-net-pci,")
    xml = b"<interface type='ethernet'><model type='rtl8139'/></interface>"
    assert interface_model(xml) == "rtl8139"
    assert interface_model(b"<interface type='ethernet'/>") is None
