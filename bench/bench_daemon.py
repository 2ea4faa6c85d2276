#!/usr/bin/env python3
"""nwguardd benchmark: flush recovery and memory with N bound ports, in a throw-away namespace.

Prints one JSON object (figures, never asserts). Needs root. Everything happens in a network
namespace this script makes and always deletes (``nwgbd-<pid>``) and a temporary directory it
removes; the host's own ruleset is never touched.

With N tap devices as ports (default 1000), each bound to ``clean-traffic`` with its own MAC
and IPv4 address through the daemon's socket:

* ``flush_recovery_ms``: from the end of ``nft flush ruleset`` (run in-process in the
  namespace with libnftables) until nwguard's tables are back with all N ports (polled every
  2 ms; the re-apply is one transaction, so the last dispatch map complete means all of it);
  median/min/max over several flushes, plus the daemon's own figure (its log: check + re-apply);
* ``chain_delete_recovery_ms``: the same after deleting one base chain only;
* ``sighup_reapply_ms``: the daemon's log figure for a forced re-apply;
* ``rss_kib``: the daemon's VmRSS (``/proc/PID/status``) at start with no port, after binding
  N, and after the recoveries; ``nft_monitor_rss_kib`` for its ``nft monitor`` child;
* ``idle_cpu_percent``: CPU the daemon uses over 10 s with N ports and nothing happening
  (periodic structural checks);
* ``bind_via_daemon_s``: binding the N ports through the socket (one proxy, a loop);
* ``restart_ready_s``: SIGTERM, then a new daemon until its socket answers (start-up
  reconcile of N ports: recompile and one transaction).

    sudo .venv/bin/python bench/bench_daemon.py [--ports 1000] [--flushes 7]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from nwguard.daemon.proxy import DaemonProxy, connect

BIN = Path(sys.executable).parent
NWGUARDD = str(BIN / "nwguardd")

POLL = r"""
import json, sys, time, nftables
n, what = int(sys.argv[1]), sys.argv[2]
nft = nftables.Nftables(); nft.set_json_output(True)
def complete():
    if nft.cmd("list chain bridge nwguard pre_l2")[0] != 0: return False
    rc, out, _ = nft.cmd("list map bridge nwguard l2i")
    if rc != 0: return False
    for item in json.loads(out)["nftables"]:
        if "map" in item: return len(item["map"].get("elem", [])) == n
    return False
assert complete(), "not complete before the flush"
cmd = "flush ruleset" if what == "flush" else "flush chain bridge nwguard pre_l2; delete chain bridge nwguard pre_l2"
rc, _, err = nft.cmd(cmd)
assert rc == 0, err
t0 = time.monotonic()
while not complete():
    if time.monotonic() - t0 > 30: print(json.dumps({"timeout": True})); sys.exit()
    time.sleep(0.002)
print(json.dumps({"ms": (time.monotonic() - t0) * 1000}))
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sh(*argv: str, input: str | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, input=input).stdout


def restore_ms(log_since: Callable[[], str], timeout: float) -> int | None:
    """The daemon's own figure for its restore, from its log (None: not logged in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"restored nwguard's rules \(.*?\) in (\d+) ms", log_since())
        if m:
            return int(m.group(1))
        time.sleep(0.01)
    return None


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class Bench:
    def __init__(self, ports: int) -> None:
        self.n = ports
        self.ns = f"nwgbd-{os.getpid()}"
        self.top = Path(tempfile.mkdtemp(prefix="nwguard-bench-daemon-"))
        self.config, self.state = self.top / "etc", self.top / "run"
        self.proc: subprocess.Popen | None = None
        self.client: DaemonProxy | None = None

    def port(self, i: int) -> str:
        return f"tap{i}"

    def setup(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        lines = []
        for i in range(self.n):
            lines += [f"tuntap add {self.port(i)} mode tap", f"link set {self.port(i)} up"]
        sh("ip", "-n", self.ns, "-batch", "-", input="\n".join(lines) + "\n")

    def start(self) -> float:
        t0 = time.monotonic()
        logf = open(self.top / "nwguardd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, NWGUARDD, "--config-dir", str(self.config),
             "--state-dir", str(self.state), "--log-level", "debug"], stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
        logf.close()
        sock = self.state / "nwguardd.sock"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nwguardd exited:\n{self.log()}")
            got = connect(sock, timeout=1.0) if sock.exists() else None
            if got is not None and got[1]["pid"] == self.proc.pid:
                self.client = DaemonProxy(None, got[0], got[1], sock)
                return time.monotonic() - t0
            time.sleep(0.02)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def log(self) -> str:
        return (self.top / "nwguardd.log").read_text(errors="replace")

    def bind_all(self) -> float:
        t0 = time.monotonic()
        for i in range(self.n):
            mac = f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255 or 1}"
            self.client.nwfilter_binding_create(
                "<filterbinding><owner><name>vm</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53"
                f"</uuid></owner><portdev name='{self.port(i)}'/><mac address='{mac}'/>"
                f"<filterref filter='clean-traffic'><parameter name='IP' value='{ip}'/>"
                "</filterref></filterbinding>"
            )
        return time.monotonic() - t0

    def recovery(self, what: str) -> dict[str, Any]:
        before = len(self.log())
        out = sh("ip", "netns", "exec", self.ns, sys.executable, "-c", POLL, str(self.n), what)
        result = json.loads(out)
        result["daemon_ms"] = restore_ms(lambda: self.log()[before:], 10)
        time.sleep(0.3)  # let the daemon settle before the next round
        return result

    def sighup_ms(self) -> int | None:
        before = len(self.log())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(
                r"re-applied nwguard's rules \(.*?\) in (\d+) ms \(.*?\): SIGHUP",
                self.log()[before:],
            )
            if m:
                return int(m.group(1))
            time.sleep(0.01)
        return None

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)
            shutil.rmtree(self.top, ignore_errors=True)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "runs": len(values)}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench(args.ports)
    out: dict[str, Any] = {"ports": args.ports}
    try:
        log(f"creating {args.ports} tap ports in {b.ns}")
        b.setup()
        out["start_empty_s"] = round(b.start(), 3)
        out["rss_kib"] = {"empty": rss_kib(b.proc.pid)}
        log("binding through the daemon")
        out["bind_via_daemon_s"] = round(b.bind_all(), 2)
        time.sleep(1)
        out["rss_kib"]["bound"] = rss_kib(b.proc.pid)
        log("flush recoveries")
        flushes = [b.recovery("flush") for _ in range(args.flushes)]
        out["flush_recovery_ms"] = summary([r["ms"] for r in flushes if "ms" in r])
        out["flush_recovery_daemon_ms"] = summary(
            [r["daemon_ms"] for r in flushes if r.get("daemon_ms")]
        )
        out["flush_timeouts"] = sum(1 for r in flushes if r.get("timeout"))
        chains = [b.recovery("chain") for _ in range(3)]
        out["chain_delete_recovery_ms"] = summary([r["ms"] for r in chains if "ms" in r])
        out["sighup_reapply_ms"] = b.sighup_ms()
        out["rss_kib"]["after_recoveries"] = rss_kib(b.proc.pid)
        mon = [c for c in children(b.proc.pid)]
        out["nft_monitor_rss_kib"] = rss_kib(mon[0]) if mon else None
        log("idle CPU over 10 s")
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0 = time.monotonic(), cpu_ticks(b.proc.pid)
        time.sleep(10)
        out["idle_cpu_percent"] = round(
            (cpu_ticks(b.proc.pid) - c0) / hz / (time.monotonic() - t0) * 100, 2
        )
        log("restart")
        b.stop()
        out["restart_ready_s"] = round(b.start(), 2)
        out["rss_kib"]["after_restart"] = rss_kib(b.proc.pid)
    finally:
        if os.environ.get("NWGUARD_BENCH_LOG"):
            shutil.copy(b.top / "nwguardd.log", os.environ["NWGUARD_BENCH_LOG"])
        b.cleanup()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ports", type=int, default=1000)
    p.add_argument("--flushes", type=int, default=7)
    args = p.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"skipped": "needs root"}))
        return 0
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
