"""A real podman (Debian 12's 4.3, rootful, CNI backend) runs containers behind nwguard-cni.

Everything podman does happens in the lab's host namespace and, for each podman command, in
a private mount namespace over the test's own directories (:mod:`nwguard_demo.podman_ns`): storage,
run directories, libcni's cache, network namespaces and locks; nothing of the machine's
podman state or network is touched. The image is busybox-static, imported from a tarball.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nwguard.api import Client
from nwguard.cli import cni as cni_cli
from nwguard_demo import podman_ns
from nwguard_demo.containers import PROBE, busybox_image, containers_conf  # the demo's probe

from .lab import Lab

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]

SANDBOX = Path(podman_ns.__file__)  # the demo's: the same private mount namespace
IMAGE = "localhost/nwguard-busybox"
GUARDED, OPEN = "nwg-guarded", "nwg-open"
SUBNETS = {GUARDED: "10.89.1", OPEN: "10.89.2"}
SPOOF_MAC = "0a:58:0a:59:01:63"


@dataclass
class Podman:
    """podman with private configuration, storage and state, in the lab's host namespace."""

    lab: Lab
    work: Path

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [
            "nsenter", f"--net=/run/netns/{self.lab.host_ns}",
            "unshare", "--mount", "--propagation", "private",
            sys.executable, str(SANDBOX), str(self.work),
            "podman", "--root", str(self.work / "storage"), "--runroot",
            str(self.work / "runroot"), "--storage-driver", "vfs", *args,
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def run(self, network: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self(
            "run", "--rm", "--network", network, "--cgroups=disabled",
            "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
            "--cap-add", "NET_ADMIN,NET_RAW", IMAGE, *cmd,
        )  # fmt: skip

    def probe(self, network: str) -> dict[str, str]:
        net = SUBNETS[network]
        out = self.run(network, "/bin/sh", "-c", PROBE, "probe", f"{net}.1", f"{net}.99", SPOOF_MAC)
        return dict(line.split("=", 1) for line in out.stdout.split())

    @property
    def nwguard(self) -> Client:
        return Client.open(str(self.work / "etc"), str(self.work / "state"))


def conflist(work: Path, name: str, bridge: str, guarded: bool) -> dict[str, Any]:
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
            "ipam": {
                "type": "host-local", "dataDir": str(work / "ipam"),
                "ranges": [[{"subnet": f"{SUBNETS[name]}.0/24"}]],
            },
        }
    ]  # fmt: skip
    if guarded:
        plugins.append(
            {
                "type": "nwguard",
                "filter": "clean-traffic",
                "configDir": str(work / "etc"),
                "stateDir": str(work / "state"),
            }
        )
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


@pytest.fixture
def podman(lab: Lab) -> Iterator[Podman]:
    # podman refuses a run root of more than 50 characters: pytest's tmp_path is too long.
    work = Path(tempfile.mkdtemp(prefix="nwgpod-", dir="/tmp"))
    try:
        yield _setup(lab, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _setup(lab: Lab, work: Path) -> Podman:
    (work / "cni-net").mkdir(parents=True)
    (work / "containers.conf").write_text(containers_conf(work))
    cni_cli.install(work / "cni-bin")
    lab.host()
    bridges = {GUARDED: lab.devname("pg"), OPEN: lab.devname("po")}
    for name, bridge in bridges.items():
        doc = conflist(work, name, bridge, guarded=name == GUARDED)
        (work / "cni-net" / f"{name}.conflist").write_text(json.dumps(doc))
    busybox_image(work / "rootfs.tar")
    pod = Podman(lab, work)
    pod("import", str(work / "rootfs.tar"), IMAGE)
    return pod


def host_links(lab: Lab) -> set[str]:
    links = json.loads(lab.run(lab.host_ns, "ip", "-j", "link", "show").stdout)
    return {link["ifname"] for link in links}


def dispatched_ports(lab: Lab) -> dict[str, list[Any]]:
    doc = json.loads(lab.run(lab.host_ns, "nft", "-j", "list", "table", "bridge", "nwguard").stdout)
    maps = [o["map"] for o in doc["nftables"] if "map" in o]
    return {m["name"]: m.get("elem", []) for m in maps}


def fixed_chains() -> set[str]:
    """The chains of nwguard's fixed layout: what a reset to no port at all creates."""
    from nwguard.backends.nft.render import to_nft
    from nwguard.compile.kernel_state import KernelState, full

    adds = (c["add"] for c in to_nft(full(KernelState())).commands if "add" in c)
    return {a["chain"]["name"] for a in adds if "chain" in a and a["chain"]["family"] == "bridge"}


def port_chains(lab: Lab) -> set[str]:
    doc = json.loads(lab.run(lab.host_ns, "nft", "-j", "list", "table", "bridge", "nwguard").stdout)
    return {o["chain"]["name"] for o in doc["nftables"] if "chain" in o} - fixed_chains()


def test_podman_container_spoofing_is_dropped_and_the_control_network_passes_all(
    podman: Podman, lab: Lab
) -> None:
    guarded = podman.probe(GUARDED)
    control = podman.probe(OPEN)
    assert control == {"honest": "pass", "ip": "pass", "mac": "pass"}
    assert guarded == {"honest": "pass", "ip": "drop", "mac": "drop"}


def test_podman_run_rm_leaves_no_binding_rule_or_veth(podman: Podman, lab: Lab) -> None:
    before = host_links(lab)
    out = podman.run(GUARDED, "/bin/sh", "-c", "ip -o link show eth0")
    assert "eth0" in out.stdout
    assert podman.nwguard.nwfilter_binding_list() == []
    assert all(elems == [] for elems in dispatched_ports(lab).values())
    assert port_chains(lab) == set()
    veths = {n for n in host_links(lab) - before if not n.startswith("pg-")}
    assert veths == set()


def test_the_plugin_binds_while_the_container_runs(podman: Podman, lab: Lab) -> None:
    """The binding exists exactly while the container runs, on its veth, with its IP."""
    proc = subprocess.Popen(
        [
            "nsenter", f"--net=/run/netns/{lab.host_ns}",
            "unshare", "--mount", "--propagation", "private",
            sys.executable, str(SANDBOX), str(podman.work),
            "podman", "--root", str(podman.work / "storage"), "--runroot",
            str(podman.work / "runroot"), "--storage-driver", "vfs",
            "run", "--rm", "--network", GUARDED, "--cgroups=disabled",
            "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
            IMAGE, "/bin/sleep", "4",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        bindings = []
        deadline = time.monotonic() + 30
        while not bindings and time.monotonic() < deadline and proc.poll() is None:
            bindings = podman.nwguard.nwfilter_binding_list()
            time.sleep(0.1)
        assert len(bindings) == 1, proc.stderr.read() if proc.stderr else ""
        [b] = bindings
        assert b.owner_name.startswith("cni:") and b.owner_name.endswith(":eth0")
        assert b.params()["IP"][0].startswith(SUBNETS[GUARDED] + ".")
        assert b.portdev in host_links(lab)
        assert [e[0] for e in dispatched_ports(lab)["l2o"]] == [b.portdev]
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert podman.nwguard.nwfilter_binding_list() == []
    assert b.portdev not in host_links(lab)
