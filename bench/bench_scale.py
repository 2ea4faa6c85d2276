#!/usr/bin/env python3
"""10,000 ports: binding, one more, a rebuild, the kernel's objects, nwguardd's recovery and memory.

Prints one JSON object (figures only, never asserts). Needs root. Everything happens in a
network namespace this script makes and always deletes (``nwg-scale-<pid>``) and a temporary
directory (on a tmpfs, as ``/run`` is on a standard host) that it removes.

With N = 10 and ``--ports`` (default 10,000) tap devices, each bound to ``clean-traffic`` with
its own MAC and IPv4 address:

* ``bind_many_s``: ``nwfilter_binding_create_many`` of the N ports, one transaction;
* ``kernel_objects``: chains, rules, sets and elements in nwguard's tables at each N (rules
  must not grow with N: per-port data lives in set elements);
* ``one_port``: binding and unbinding one more port with N bound, engine time (median of 20);
* ``rebuild``: ``nwfilter_define`` of a changed ``clean-traffic`` that all N use (median of 3);
* ``nwguardd``: a daemon started on that state: time until its socket answers (its start-up
  reconcile of N ports), resident memory after start and after the recoveries, and the time
  from ``nft flush ruleset`` to all N ports back in the dispatch maps (median of 5).

    sudo .venv/bin/python bench/bench_scale.py [--ports 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import bench_bindings as bb
import bench_daemon as bd
import harness
from harness import in_namespace

FLUSHES = 5
REBUILDS = 3


def log(msg: str) -> None:
    print(f"[bench_scale] {msg}", file=sys.stderr, flush=True)


def outer(args: argparse.Namespace) -> int:
    """The measuring half in a namespace of its own (``harness.in_namespace``)."""
    return in_namespace("scale", __file__, ["--ports", str(args.ports)])


class Daemon:
    """nwguardd on a workspace's directories, in this (the bench's own) namespace."""

    def __init__(self, ws: bb.Workspace) -> None:
        self.ws = ws
        self.logfile = ws.root / "nwguardd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        from nwguard.daemon.proxy import connect

        t0 = time.monotonic()
        with open(self.logfile, "ab") as logf:
            self.proc = subprocess.Popen(
                [bd.NWGUARDD, "--config-dir", str(self.ws.config), "--state-dir", str(self.ws.state)],
                stdout=logf, stderr=subprocess.STDOUT,
            )  # fmt: skip
        sock = self.ws.state / "nwguardd.sock"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nwguardd exited:\n{self.log()}")
            got = connect(sock, timeout=1.0) if sock.exists() else None
            if got is not None and got[1]["pid"] == self.proc.pid:
                got[0].close()
                return time.monotonic() - t0
            time.sleep(0.02)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def recovery_ms(self, n: int) -> dict[str, Any]:
        before = len(self.log())
        out = subprocess.run([sys.executable, "-c", bd.POLL, str(n), "flush"],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        result = json.loads(out)
        result["daemon_ms"] = bd.restore_ms(lambda: self.log()[before:], 30)
        time.sleep(0.5)  # let the daemon settle before the next round
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(tmp: Path, n: int, xmls: list[str], full: bool) -> dict[str, Any]:
    ws = bb.Workspace(tmp, f"scale-{n}")
    client = ws.client()
    t = time.perf_counter()
    client.nwfilter_binding_create_many(xmls[:n])
    res: dict[str, Any] = {"bind_many_s": round(time.perf_counter() - t, 3)}
    res["kernel_objects"] = bb.kernel_objects(ws)
    if full:
        log(f"one port bind/unbind at N={n}")
        res["one_port"] = bb.one_port_at_big(client, xmls[n], harness.port(n))
        log(f"rebuild of {n} after redefining clean-traffic")
        bb.REBUILD_ROUNDS = REBUILDS
        res["rebuild"] = bb.rebuild_at_big(client, ws)
        del client
        log(f"nwguardd with {n} bound")
        d = Daemon(ws)
        try:
            ready = d.start()
            assert d.proc is not None
            rss_start = bd.rss_kib(d.proc.pid)
            flushes = [d.recovery_ms(n) for _ in range(FLUSHES)]
            ok = [f["ms"] for f in flushes if "ms" in f]
            res["nwguardd"] = {
                "start_until_socket_answers_s": round(ready, 2),
                "rss_mib_after_start": round(rss_start / 1024, 1) if rss_start else None,
                "rss_mib_after_recoveries": round((bd.rss_kib(d.proc.pid) or 0) / 1024, 1),
                "flush_recovery_ms_median": round(statistics.median(ok), 1) if ok else None,
                "flush_recovery_ms_all": [round(x, 1) for x in ok],
                "flush_timeouts": sum(1 for f in flushes if f.get("timeout")),
                "daemon_restore_ms": [f["daemon_ms"] for f in flushes],
            }
        finally:
            d.stop()
    ws.drop()
    return res


def inner(args: argparse.Namespace) -> int:
    os.environ["NWGUARD_NO_DAEMON"] = "1"
    tmp = Path(args.tmp)
    big = args.ports
    xmls = [harness.binding_xml(i) for i in range(big + 1)]
    log(f"creating {big + 1} tap ports")
    harness.make_ports(tmp, big + 1)
    res: dict[str, Any] = {
        "bench": "scale",
        "goals": {
            "one_more_engine_ms": 5,
            "rebuild_s": 3,
            "flush_recovery_s": 1,
            "nwguardd_rss_mib": 150,
            "rules": "as at N = 10",
        },
        "machine": bb.machine(),
        "sizes": {},
    }
    for n in (10, big):
        log(f"binding {n} ports")
        res["sizes"][str(n)] = measure(tmp, n, xmls, full=n == big)
    small, large = (res["sizes"][str(k)]["kernel_objects"] for k in (10, big))
    res["rules_same_as_at_10"] = small["rules"] == large["rules"]
    res["machine"]["loadavg_end"] = os.getloadavg()
    bb.reset_kernel()
    print(json.dumps(res, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", type=int, default=10_000)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    with contextlib.suppress(BrokenPipeError):
        return inner(args) if args.inner else outer(args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
