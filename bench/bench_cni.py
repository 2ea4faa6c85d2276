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
* ``cpu_s`` and ``plugin_cpu_ms``: the same for the CPU time of podman and its children (the
  plugin) plus nwguardd's during the run: less sensitive to a loaded machine than wall time;
* ``plugin_calls``: the plugin's invocations during one ``podman run --rm`` (libcni's);
* ``plugin_version_ms``: the installed plugin executable answering VERSION (libcni runs it
  before every ADD and DEL).

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


def podman(ns: str, work: Path, *args: str) -> tuple[float, float]:
    """Run podman; its wall time and the CPU time of it and its children (the plugin)."""
    argv = [
        "nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--propagation", "private",
        sys.executable, str(SANDBOX), str(work), "podman", "--root", str(work / "storage"),
        "--runroot", str(work / "runroot"), "--storage-driver", "vfs", *args,
    ]  # fmt: skip
    r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def task_cpu(pid: int) -> float:
    """CPU seconds of every thread of a running process (schedstat: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def run_rm(ns: str, work: Path, network: str) -> tuple[float, float]:
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


def version_ms(exe: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(exe)], input=b"", env={"CNI_COMMAND": "VERSION"}, check=True,
                       capture_output=True)  # fmt: skip
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 1)


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
        cpu: dict[str, list[float]] = {name: [] for name in nets}
        for _ in range(opts.runs):
            for name in nets:
                d0 = task_cpu(daemon.pid)
                wall, used = run_rm(ns, work, name)
                times[name].append(wall)
                cpu[name].append(used + task_cpu(daemon.pid) - d0)
        med = {k: statistics.median(v) for k, v in times.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
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
            "cpu_s": {
                "guarded": round(cpu_med[GUARDED], 3),
                "guarded_nwguardd": round(cpu_med[GUARDED_D], 3),
                "open": round(cpu_med[OPEN], 3),
            },
            "plugin_cpu_ms": {
                "in_process": round((cpu_med[GUARDED] - cpu_med[OPEN]) * 1000, 1),
                "nwguardd": round((cpu_med[GUARDED_D] - cpu_med[OPEN]) * 1000, 1),
            },
            "plugin_calls": calls,
            "plugin_version_ms": version_ms(exe, opts.runs),
        }, indent=2))  # fmt: skip
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
