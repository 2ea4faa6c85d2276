#!/usr/bin/env python3
"""CNI plugin benchmark: ``podman run --rm`` start to exit with and without nwguard-cni.

Prints one JSON object (figures only, never asserts; medians, the machine may be noisy).
Needs root and podman. Everything happens in a network namespace this script makes and
always deletes (``nwgbc-<pid>``), in a private mount namespace per podman command over a
temporary directory it removes (the set-up of ``tests/kernel/test_cni_podman.py``); the
machine's own podman state, network and ruleset are never touched.

* ``podman_run_rm_s``: a container running ``sleep 0`` on a network with the plugin binding
  in-process (``guarded``), on one whose plugin asks a running nwguardd (``guarded_nwguardd``)
  and on the same network without the plugin (``open``), in turn; ``plugin_adds_ms`` is the
  difference of the medians to ``open`` (the issue's target: under 100 ms);
* ``plugin_calls``: the plugin's invocations during one ``podman run --rm`` (libcni's);
* ``plugin_call_ms``: the installed plugin run directly on a veth of this namespace, per
  command (``DEL0``: a DEL with nothing to undo), ``wall`` and ``cpu`` (the plugin's CPU time,
  plus nwguardd's for ``nwguardd``) medians, and ``per_container`` their sums over
  ``plugin_calls``. CPU time is the steadier figure on a loaded machine; podman's own CPU
  cannot be counted (its clean-up runs from conmon, outside this process tree).

    sudo .venv/bin/python bench/bench_cni.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from nwguard.cli import cni as cni_cli
from tests.kernel.test_cni_podman import (
    GUARDED,
    IMAGE,
    OPEN,
    SANDBOX,
    busybox_tarball,
    conflist,
    containers_conf,
)


def podman(ns: str, work: Path, *args: str) -> float:
    argv = [
        "nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--propagation", "private",
        sys.executable, str(SANDBOX), str(work), "podman", "--root", str(work / "storage"),
        "--runroot", str(work / "runroot"), "--storage-driver", "vfs", *args,
    ]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t


def task_cpu(pid: int) -> float:
    """CPU seconds of every thread of a running process (schedstat: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def run_rm(ns: str, work: Path, network: str) -> float:
    return podman(
        ns, work, "run", "--rm", "--network", network, "--cgroups=disabled",
        "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096", IMAGE, "/bin/sleep", "0",
    )  # fmt: skip


GUARDED_D = "nwg-guarded-d"


def guarded_by_daemon(work: Path) -> dict[str, Any]:
    """The guarded network with its own nwguard directories (served by nwguardd)."""
    doc = conflist(work, GUARDED, "nwgbc-d", guarded=True)
    doc["name"] = GUARDED_D
    doc["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.89.4.0/24"}]]
    doc["plugins"][1].update(configDir=str(work / "etc-d"), stateDir=str(work / "state-d"))
    return doc


def start_nwguardd(ns: str, work: Path) -> subprocess.Popen[bytes]:
    nwguardd = str(Path(sys.executable).with_name("nwguardd"))
    argv = ["ip", "netns", "exec", ns, nwguardd, "--config-dir", str(work / "etc-d"),
            "--state-dir", str(work / "state-d")]  # fmt: skip
    log = open(work / "nwguardd.log", "wb")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 20
    while not (work / "state-d" / "nwguardd.sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"nwguardd did not start:\n{(work / 'nwguardd.log').read_text()}")
        time.sleep(0.05)
    return proc


def count_calls(ns: str, work: Path, exe: Path) -> list[str]:
    """The plugin's invocations (CNI_COMMAND) during one ``podman run --rm``."""
    real = exe.with_name("nwguard.real")
    exe.rename(real)
    log = work / "calls.log"
    exe.write_text(f'#!/bin/sh\necho "$CNI_COMMAND" >> {log}\nexec {real}\n')
    exe.chmod(0o755)
    try:
        run_rm(ns, work, GUARDED)
        return log.read_text().split()
    finally:
        real.replace(exe)


def direct_calls(
    ns: str, work: Path, exe: Path, daemon: subprocess.Popen[bytes], runs: int
) -> dict[str, Any]:
    """The plugin run as libcni runs it, on a bridge port of ``ns`` (peer in ``ns``-c)."""
    cns = ns + "-c"
    subprocess.run(["ip", "netns", "add", cns], check=True)
    try:
        for argv in (["link", "add", "nwgbc-br", "type", "bridge"],
                     ["link", "add", "nwgbc-h", "type", "veth", "peer", "name", "eth0", "netns", cns],
                     ["link", "set", "nwgbc-h", "master", "nwgbc-br", "up"]):  # fmt: skip
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        link = json.loads(subprocess.run(["ip", "-n", cns, "-j", "link", "show", "eth0"],
                                         check=True, capture_output=True, text=True).stdout)  # fmt: skip
        prev = {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "nwgbc-br"}, {"name": "nwgbc-h"},
                           {"name": "eth0", "mac": link[0]["address"], "sandbox": f"/run/netns/{cns}"}],
            "ips": [{"address": "10.89.6.2/24", "interface": 2}],
        }  # fmt: skip
        out: dict[str, Any] = {}
        for mode, sub in (("in_process", ""), ("nwguardd", "-d")):
            config = {"cniVersion": "1.0.0", "name": "b", "type": "nwguard", "filter": "clean-traffic",
                      "configDir": str(work / f"etc{sub}"), "stateDir": str(work / f"state{sub}"),
                      "prevResult": prev}  # fmt: skip
            got: dict[str, list[tuple[float, float]]] = {
                c: [] for c in ("VERSION", "ADD", "DEL", "DEL0")
            }
            for _ in range(runs):
                for command, figures in got.items():
                    figures.append(call(ns, cns, exe, command, config, daemon.pid))
            out[mode] = {
                c: {"wall": _ms(statistics.median(w for w, _ in v)),
                    "cpu": _ms(statistics.median(u for _, u in v))}
                for c, v in got.items()
            }  # fmt: skip
        return out
    finally:
        subprocess.run(["ip", "netns", "del", cns], check=False)


def call(
    ns: str, cns: str, exe: Path, command: str, config: dict[str, Any], daemon: int
) -> tuple[float, float]:
    """Wall and CPU seconds of one plugin call (CPU: the plugin and nwguardd)."""
    env = {"CNI_COMMAND": "DEL" if command == "DEL0" else command, "CNI_CONTAINERID": "b0b",
           "CNI_IFNAME": "eth0", "CNI_NETNS": f"/run/netns/{cns}", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # fmt: skip
    argv = ["nsenter", f"--net=/run/netns/{ns}", str(exe)]
    r0, d0, t = resource.getrusage(resource.RUSAGE_CHILDREN), task_cpu(daemon), time.perf_counter()
    subprocess.run(
        argv, input=json.dumps(config).encode(), env=env, check=True, capture_output=True
    )
    wall, d1, r1 = (
        time.perf_counter() - t,
        task_cpu(daemon),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime) + d1 - d0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    opts = ap.parse_args()
    if shutil.which("podman") is None:
        print(json.dumps({"skipped": "podman is not installed"}))
        return
    ns = f"nwgbc-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="nwgbc-", dir="/tmp"))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    daemon = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        (work / "cni-net").mkdir()
        (work / "containers.conf").write_text(containers_conf(work))
        exe = cni_cli.install(work / "cni-bin")
        for name, bridge in ((GUARDED, "nwgbc-g"), (OPEN, "nwgbc-o")):
            doc = conflist(work, name, bridge, guarded=name == GUARDED)
            (work / "cni-net" / f"{name}.conflist").write_text(json.dumps(doc))
        (work / "cni-net" / f"{GUARDED_D}.conflist").write_text(json.dumps(guarded_by_daemon(work)))
        daemon = start_nwguardd(ns, work)
        busybox_tarball(work / "rootfs.tar")
        podman(ns, work, "import", str(work / "rootfs.tar"), IMAGE)
        nets = (GUARDED, GUARDED_D, OPEN)
        for name in nets:
            run_rm(ns, work, name)  # warm caches, create the bridges
        calls = count_calls(ns, work, exe)
        times: dict[str, list[float]] = {name: [] for name in nets}
        for _ in range(opts.runs):
            for name in nets:
                times[name].append(run_rm(ns, work, name))
        med = {k: statistics.median(v) for k, v in times.items()}
        direct = direct_calls(ns, work, exe, daemon, opts.runs)
        for figures in direct.values():
            figures["per_container"] = {
                k: round(sum(figures[c][k] for c in calls), 1) for k in ("wall", "cpu")
            }
        print(json.dumps({
            "runs": opts.runs,
            "podman_run_rm_s": {
                "guarded": round(med[GUARDED], 3), "guarded_nwguardd": round(med[GUARDED_D], 3),
                "open": round(med[OPEN], 3),
            },
            "plugin_adds_ms": {
                "in_process": round((med[GUARDED] - med[OPEN]) * 1000, 1),
                "nwguardd": round((med[GUARDED_D] - med[OPEN]) * 1000, 1),
            },
            "plugin_calls": calls,
            "plugin_call_ms": direct,
        }, indent=2))  # fmt: skip
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
