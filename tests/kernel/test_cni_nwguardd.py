"""nwguard-cni with nwguardd running: the plugin asks the daemon over its socket (no engine in
the plugin), on a real veth and real rules; and podman containers behind it, with the control
network beside them."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nwguard
from nwguard.cli import cni as cni_cli

from .lab import Lab, Node
from .nwgd import Daemon, vmap_ports
from .test_cni_plugin import cni_setting
from .test_cni_podman import GUARDED, OPEN, Podman, dispatched_ports, podman  # noqa: F401

pytestmark = pytest.mark.kernel

CID = "d43m0n"
ROOT = str(Path(nwguard.__file__).resolve().parents[1])


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    d = Daemon(lab)
    try:
        yield d.start()
    finally:
        d.close()


def cni_env(command: str, netns: str) -> list[str]:
    return ["CNI_COMMAND=" + command, f"CNI_CONTAINERID={CID}", "CNI_IFNAME=eth0",
            "CNI_NETNS=" + netns, "CNI_PATH=/usr/lib/cni", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]  # fmt: skip


def plugin(lab: Lab, exe: Path, command: str, config: dict[str, Any], netns: str) -> Any:
    argv = ["env", "-i", *cni_env(command, netns), str(exe)]
    out = lab.run(lab.host_ns, *argv, input=json.dumps(config), check=False)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None)


def imported(lab: Lab, command: str, config: dict[str, Any], netns: str) -> set[str]:
    """The nwguard modules the installed plugin's command line loads for ``command``."""
    argv = ["env", "-i", *cni_env(command, netns), sys.executable, "-IS", "-X", "importtime",
            "-c", cni_cli._RUN, ROOT]  # fmt: skip
    out = lab.run(lab.host_ns, *argv, input=json.dumps(config), check=False)
    assert out.returncode == 0, out.stdout
    names = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    return {n for n in names if n.startswith("nwguard")}


def setting(lab: Lab, daemon: Daemon, tmp_path: Path) -> tuple[Node, dict[str, Any], str]:
    return cni_setting(lab, "10.89.5.1", daemon.config, daemon.state)


def test_add_check_del_through_nwguardd(lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    exe = cni_cli.install(tmp_path / "bin")
    ct, config, netns = setting(lab, daemon, tmp_path)
    daemon.new_log()

    assert plugin(lab, exe, "ADD", config, netns) == (0, config["prevResult"])
    assert "nwfilter_binding_create from pid" in daemon.new_log()  # the daemon bound it
    [b] = daemon.client.nwfilter_binding_list()
    assert (b.owner_name, b.portdev, b.params()["IP"]) == (f"cni:{CID}:eth0", ct.port, (ct.ip,))
    assert vmap_ports(lab, "l2o") == {ct.port}
    assert plugin(lab, exe, "CHECK", config, netns) == (0, None)

    del config["prevResult"]
    assert plugin(lab, exe, "DEL", config, netns) == (0, None)
    assert "nwfilter_binding_delete from pid" in daemon.new_log()
    assert daemon.client.nwfilter_binding_list() == [] and vmap_ports(lab, "l2o") == set()
    daemon.new_log()
    assert plugin(lab, exe, "DEL", config, netns) == (0, None)  # nothing to undo
    assert " from pid " not in daemon.new_log()  # ... and nobody was asked (no request)


def test_through_nwguardd_the_plugin_loads_no_engine(
    lab: Lab, daemon: Daemon, tmp_path: Path
) -> None:
    _, config, netns = setting(lab, daemon, tmp_path)
    add = imported(lab, "ADD", config, netns)
    assert len(daemon.client.nwfilter_binding_list()) == 1
    dele = imported(lab, "DEL", {k: v for k, v in config.items() if k != "prevResult"}, netns)
    assert daemon.client.nwfilter_binding_list() == []
    for loaded in (add, dele):
        assert "nwguard.cni.fast" in loaded
        assert not {m for m in loaded if m.split(".")[1:2] in (["engine"], ["model"], ["api"])}
    # the control: without the daemon the same ADD binds in-process, engine and all
    daemon.stop()
    assert "nwguard.engine.ports" in imported(lab, "ADD", config, netns)


def test_a_daemon_of_another_configuration_is_an_error(
    lab: Lab, daemon: Daemon, tmp_path: Path
) -> None:
    exe = cni_cli.install(tmp_path / "bin")
    _, config, netns = setting(lab, daemon, tmp_path)
    config["configDir"] = str(tmp_path / "other-etc")
    status, err = plugin(lab, exe, "ADD", config, netns)
    assert (status, err["code"], err["details"]) == (1, 100, "conflict")
    assert daemon.client.nwfilter_binding_list() == []


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_through_nwguardd_drops_spoofing_and_the_control_passes(
    podman: Podman,  # noqa: F811
    lab: Lab,
) -> None:
    d = Daemon(lab)
    d.config, d.state = podman.work / "etc", podman.work / "state"  # the conflist's
    try:
        d.start()
        d.new_log()
        guarded = podman.probe(GUARDED)
        log = d.new_log()
        control = podman.probe(OPEN)
        assert control == {"honest": "pass", "ip": "pass", "mac": "pass"}
        assert guarded == {"honest": "pass", "ip": "drop", "mac": "drop"}
        assert "nwfilter_binding_create from pid" in log
        assert "nwfilter_binding_delete from pid" in log
        assert d.client.nwfilter_binding_list() == []
        assert all(elems == [] for elems in dispatched_ports(lab).values())
    finally:
        d.close()  # stops it; the podman fixture removes its directories
