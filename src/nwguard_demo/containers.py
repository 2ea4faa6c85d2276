"""The container part of the demo (issue 14): podman containers behind the nwguard CNI plugin.

In the sandbox's host namespace, podman (rootful, CNI backend) runs with private
configuration, storage and state under the demo's temporary directory, every command in a
private mount namespace (:mod:`nwguard_demo.podman_ns`): nothing of the machine's podman is
used or left. Two CNI networks: ``demo-guarded`` chains ``nwguard`` (``clean-traffic``) after
``bridge``, ``demo-open`` is the same without it (the control). A busybox container on each
pings its gateway with its own address, then with a spoofed source IP, then sends ARP from a
spoofed MAC. While a container runs its veth is bound; after ``podman run --rm`` no binding,
rule or veth is left. Without podman the part is skipped with a one-line note.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.syntax import Syntax

from nwguard_demo.demo import DROP, PASS, Checks, DemoError, Nwguard, Row
from nwguard_demo.sandbox import Sandbox

PODMAN_NS = Path(__file__).with_name("podman_ns.py")
IMAGE = "localhost/nwguard-demo-busybox"
GUARDED, OPEN = "demo-guarded", "demo-open"
NETS = {GUARDED: ("10.99.1", "cni-guarded"), OPEN: ("10.99.2", "cni-open")}
SPOOF_MAC = "0a:58:0a:63:01:63"
# Runs in the container: one line per check, "<what>=pass" or "<what>=drop".
PROBE = """
gw=$1
ping -c1 -W2 "$gw" >/dev/null 2>&1 && echo honest=pass || echo honest=drop
ip addr add "$2/24" dev eth0
ping -c1 -W2 -I "$2" "$gw" >/dev/null 2>&1 && echo ip=pass || echo ip=drop
ip addr del "$2/24" dev eth0
ip link set eth0 address "$3"
arping -c1 -w2 -I eth0 "$gw" >/dev/null 2>&1 && echo mac=pass || echo mac=drop
"""


def unavailable() -> str | None:
    """Why containers cannot be shown here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/install.sh installs it)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "the CNI bridge plugin is not installed (containernetworking-plugins)"
    busybox = shutil.which("busybox")
    if busybox is None or b"/lib" in Path(busybox).read_bytes()[:4096]:
        return "a static busybox is needed for the container image (busybox-static)"
    return None


class Podman:
    """podman in the sandbox's host namespace, over ``work`` only."""

    def __init__(self, sb: Sandbox, work: Path) -> None:
        self.sb, self.work = sb, work

    def argv(self, *args: str) -> list[str]:
        return [
            "nsenter", f"--net=/run/netns/{self.sb.host_ns}",
            "unshare", "--mount", "--propagation", "private",
            sys.executable, str(PODMAN_NS), str(self.work),
            "podman", "--root", str(self.work / "storage"), "--runroot",
            str(self.work / "runroot"), "--storage-driver", "vfs", *args,
        ]  # fmt: skip

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
        if proc.returncode != 0:
            raise DemoError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()}")
        return proc.stdout

    def run_args(self, network: str, *cmd: str) -> list[str]:
        return [
            "run", "--rm", "--network", network, "--cgroups=disabled",
            "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
            "--cap-add", "NET_ADMIN,NET_RAW", IMAGE, *cmd,
        ]  # fmt: skip


def conflist(name: str, work: Path, nwg: Nwguard) -> dict[str, Any]:
    subnet, bridge = NETS[name]
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "dataDir": str(work / "ipam"),
                     "ranges": [[{"subnet": f"{subnet}.0/24"}]]},
        }
    ]  # fmt: skip
    if name == GUARDED:
        opts = nwg.options
        plugins.append({
            "type": "nwguard", "filter": "clean-traffic",
            "configDir": opts[opts.index("--config-dir") + 1],
            "stateDir": opts[opts.index("--state-dir") + 1],
        })  # fmt: skip
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


def containers_conf(work: Path) -> str:
    return f"""[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "crun"
tmp_dir = "{work / "libpod"}"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{work / "cni-bin"}", "/usr/lib/cni"]
network_config_dir = "{work / "cni-net"}"
"""


def busybox_image(path: Path) -> None:
    """A root filesystem of one static busybox and the applets the probes use (the demo's
    and ``tests/kernel/test_cni_podman.py``'s)."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tarfile.open(path, "w") as tar:
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "ip", "ping", "arping", "sleep", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)


def container_demo(console: Console, sb: Sandbox, nwg: Nwguard, tmp: Path) -> list[Row]:
    """Part 8; its rows (none, after a one-line note, when podman is missing)."""
    console.rule("[bold]8. Containers: podman behind the nwguard CNI plugin")
    why = unavailable()
    if why:
        console.print(f"[yellow]skipped:[/] {why}")
        return []
    check = Checks(console)
    # podman refuses a run root of more than 50 characters: keep the directory short
    work = tmp / "pod"
    (work / "cni-net").mkdir(parents=True)
    (work / "containers.conf").write_text(containers_conf(work))
    nwg("cni-install", "--dir", str(work / "cni-bin"))
    for name in NETS:
        (work / "cni-net" / f"{name}.conflist").write_text(json.dumps(conflist(name, work, nwg)))
    console.print(f"{GUARDED}.conflist (the control {OPEN} is the same without nwguard):")
    console.print(Syntax(json.dumps(conflist(GUARDED, work, nwg), indent=2), "json",
                         theme="ansi_dark"))  # fmt: skip
    busybox_image(work / "rootfs.tar")
    pod = Podman(sb, work)
    pod("import", str(work / "rootfs.tar"), IMAGE)
    console.print(f"image {IMAGE}: one static busybox, imported (no registry)", style="dim")

    for name in (GUARDED, OPEN):
        subnet, _ = NETS[name]
        console.print(f"[bold cyan]$ podman run --rm --network {name} {IMAGE} sh -c PROBE[/]")
        out = pod(*pod.run_args(name, "/bin/sh", "-c", PROBE, "probe", f"{subnet}.1",
                                f"{subnet}.99", SPOOF_MAC))  # fmt: skip
        got = dict(line.split("=", 1) for line in out.split() if "=" in line)
        expect = {"honest": PASS, "ip": DROP, "mac": DROP} if name == GUARDED else {}
        for key, label in (("honest", "its own IP and MAC"),
                           ("ip", f"spoofed source IP {subnet}.99"),
                           ("mac", f"spoofed source MAC {SPOOF_MAC} (ARP)")):  # fmt: skip
            want = expect.get(key, PASS)
            happened = {"pass": "answered", "drop": "no answer (2 s)"}.get(got.get(key, ""), "?")
            ok = got.get(key) == ("pass" if want == PASS else "drop")
            check(Row(f"container on {name} → gateway {subnet}.1, {label}", want, happened, ok))
    check(_bound_while_running(console, pod, nwg))
    check(_nothing_left(sb, nwg))
    return list(check)


def _bound_while_running(console: Console, pod: Podman, nwg: Nwguard) -> Row:
    """A container that sleeps: its veth is bound while it runs."""
    console.print(f"[bold cyan]$ podman run --rm --network {GUARDED} {IMAGE} sleep 3 &[/]")
    argv = pod.argv(*pod.run_args(GUARDED, "/bin/sleep", "3"))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ports: list[str] = []
        deadline = time.monotonic() + 30
        while not ports and proc.poll() is None and time.monotonic() < deadline:
            ports = _container_ports(_dispatched(pod.sb))  # the kernel, until ADD is done
            time.sleep(0.1)
        bound = _container_ports(_bound_ports(nwg, echo=True)) if ports else []
        status = proc.wait(timeout=60)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if status != 0:
        raise DemoError(f"podman run failed: {err.strip()}")
    happened = f"{bound[0]} bound to clean-traffic" if bound else "no binding appeared"
    return Row("while a container runs, its veth", "bound", happened, len(bound) == 1)


def _nothing_left(sb: Sandbox, nwg: Nwguard) -> Row:
    bound = _container_ports(_bound_ports(nwg, echo=True))
    veths = _container_ports(sb.links(sb.host_ns))
    left = {
        "bindings": bound,
        "dispatch entries": _container_ports(_dispatched(sb)),
        "veths": veths,
    }
    found = [f"{k}: {', '.join(v)}" for k, v in left.items() if v]
    happened = "; ".join(found) or "no binding, rule or veth of a container"
    return Row("after podman run --rm", "nothing left", happened, not found)


def _container_ports(names: Any) -> list[str]:
    """The bridge plugin's host-side veths (``veth`` and 8 hex digits) among ``names``."""
    return sorted(n for n in names if n.startswith("veth"))


def _bound_ports(nwg: Nwguard, echo: bool) -> list[str]:
    """The ports of ``nwguard nwfilter-binding-list`` (after its two header lines)."""
    out = nwg("nwfilter-binding-list", echo=echo)
    return [line.split()[0] for line in out.splitlines()[2:] if line.strip()]


def _dispatched(sb: Sandbox) -> set[str]:
    """The ports in nwguard's dispatch maps, as the kernel has them now."""
    out = sb.exec(sb.host_ns, ["nft", "-j", "list", "table", "bridge", "nwguard"])
    ports: set[str] = set()
    for item in json.loads(out.stdout)["nftables"]:
        if "map" in item:
            ports |= {str(e[0]) for e in item["map"].get("elem", [])}
    return ports
