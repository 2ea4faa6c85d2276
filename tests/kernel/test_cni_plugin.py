"""The installed CNI plugin, run as the runtime runs it, on a real veth and real rules:
ADD binds, CHECK reads the kernel's dispatch maps (and fails once they are flushed), DEL
removes everything and may be repeated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nwguard.api import Client
from nwguard.cli import cni as cni_cli

from .lab import Lab, Node

pytestmark = pytest.mark.kernel


def plugin(lab: Lab, exe: Path, command: str, config: dict[str, Any], netns: str) -> Any:
    env = ["CNI_COMMAND=" + command, "CNI_CONTAINERID=c0ffee", "CNI_IFNAME=eth0",
           "CNI_NETNS=" + netns, "CNI_PATH=/usr/lib/cni", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]  # fmt: skip
    out = lab.run(lab.host_ns, "env", "-i", *env, str(exe), input=json.dumps(config), check=False)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None)


def cni_setting(
    lab: Lab, gateway: str, config_dir: Path, state_dir: Path
) -> tuple[Node, dict[str, Any], str]:
    """A container on a bridge as the bridge plugin leaves it, and the nwguard plugin's
    config chained after it: (the container, the config, its netns path)."""
    br = lab.bridge(ip=gateway)
    ct = lab.guest("ct", bridge=br)
    netns = f"/run/netns/{ct.ns}"
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": br.name, "mac": "ee:00:00:00:00:01"},
            {"name": ct.port, "mac": "ee:00:00:00:00:02"},
            {"name": "eth0", "mac": ct.mac, "sandbox": netns},
        ],
        "ips": [{"address": f"{ct.ip}/24", "interface": 2}],
    }
    config = {"cniVersion": "1.0.0", "name": "t", "type": "nwguard", "filter": "clean-traffic",
              "configDir": str(config_dir), "stateDir": str(state_dir), "prevResult": prev}  # fmt: skip
    return ct, config, netns


def test_add_check_del_on_a_real_veth(lab: Lab, tmp_path: Path) -> None:
    exe = cni_cli.install(tmp_path / "bin")
    state = tmp_path / "run"
    ct, config, netns = cni_setting(lab, "10.89.3.1", tmp_path / "etc", state)
    prev = config["prevResult"]
    assert plugin(lab, exe, "ADD", config, netns) == (0, prev)
    [b] = Client.open(str(tmp_path / "etc"), str(state)).nwfilter_binding_list()
    assert (b.portdev, b.mac, b.params()["IP"]) == (ct.port, ct.mac, (ct.ip,))
    assert plugin(lab, exe, "CHECK", config, netns) == (0, None)

    lab.run(lab.host_ns, "nft", "flush", "map", "bridge", "nwguard", "l2o")
    status, err = plugin(lab, exe, "CHECK", config, netns)
    assert (status, err["code"]) == (1, 101) and ct.port in err["msg"]

    del config["prevResult"]
    assert plugin(lab, exe, "DEL", config, netns) == (0, None)
    assert plugin(lab, exe, "DEL", config, netns) == (0, None)
    assert Client.open(str(tmp_path / "etc"), str(state)).nwfilter_binding_list() == []
    doc = json.loads(lab.run(lab.host_ns, "nft", "-j", "list", "table", "bridge", "nwguard").stdout)
    assert [m["map"].get("elem", []) for m in doc["nftables"] if "map" in m] == [[]] * 4
