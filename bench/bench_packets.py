#!/usr/bin/env python3
"""Packet-path benchmark: 64-byte UDP through a filtered port, as a ratio of the same path
unfiltered, with N = 1, 100, 1000 bound ports; nwguard and libvirt 9.0.0 side by side.

Prints one JSON object (figures only, never asserts). The machine is shared (2 cores, other
engineers at work): each figure is the median of several iperf3 runs, every filtered figure
alternates with a run on an unfiltered twin topology (ABBA) and the ratio is the median of
the per-pair ratios; the load average is printed beside them. Needs root and iperf3. Everything happens in network
namespaces this script makes and always deletes (``nwgp<pid>-*``); libvirt runs in one of
them through ``/work/shared/tools/libvirt-ref`` (skipped when the tool is missing).

Topology: a bridge in a "host" namespace; guests ``a`` (sender) and ``b`` (receiver) in their
own namespaces on veth ports; N - 2 more tap ports (N = 1: only ``a``) bound to the same
filter, ``a`` and ``b`` in the middle of the binding order (``--position``; libvirt's path
grows with it). ``iperf3 -u -l 64 -b 0`` from a to b; the figure is packets received per second.

* unfiltered: no rules, ``bridge-nf-call-ip(6)tables`` = 0 (a plain bridge);
* ``l2``: ``clean-traffic`` (Ethernet-layer rules only) at N = 1, 100, 1000;
* ``stateful``: ``clean-traffic`` plus a TCP rule (its copies match connection state) at
  N = 100, nwguard and then libvirt 9.0.0.

    sudo .venv/bin/python bench/bench_packets.py [--runs 9] [--seconds 1] [--no-libvirt]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import binding_of, delete_namespace, measure_in_tmp

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SRC_USED = SRC
LIBVIRT_REF = Path("/work/shared/tools/libvirt-ref")
POSITION = "middle"  # where the measured pair is bound among the N ports (--position)
STATEFUL = (
    "<filter name='bench-stateful' chain='root'><filterref filter='clean-traffic'/>"
    "<rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>"
    "</filter>"
)
MAC_A, MAC_B = "52:54:00:77:00:01", "52:54:00:77:00:02"
IP_A, IP_B = "10.77.0.1", "10.77.0.2"


def log(msg: str) -> None:
    print(f"[bench_packets] {msg}", file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True, input: str | None = None, timeout: float = 600) -> str:
    out = subprocess.run(
        argv, capture_output=True, text=True, check=False, input=input, timeout=timeout
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


class Topology:
    def __init__(self, prefix: str, extra: int) -> None:
        self.host, self.a, self.b = f"{prefix}-h", f"{prefix}-a", f"{prefix}-b"
        self.extra = extra
        try:
            self._build(extra)
        except BaseException:
            self.delete()
            raise

    def _build(self, extra: int) -> None:
        for ns in (self.host, self.a, self.b):
            sh("ip", "netns", "add", ns)
        h = ("ip", "-n", self.host)
        sh(*h, "link", "add", "br0", "up", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        for ns, port, mac, ip in ((self.a, "pa", MAC_A, IP_A), (self.b, "pb", MAC_B, IP_B)):
            sh(*h, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh(*h, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        # neighbours fixed: no ARP in the measured path
        sh("ip", "-n", self.a, "neigh", "replace", IP_B, "lladdr", MAC_B, "dev", "eth0")
        sh("ip", "-n", self.b, "neigh", "replace", IP_A, "lladdr", MAC_A, "dev", "eth0")
        batch = "".join(f"tuntap add t{i} mode tap\n" for i in range(extra))
        if batch:
            sh("ip", "-n", self.host, "-batch", "-", input=batch)

    def ports(self, n: int) -> list[tuple[str, str, str]]:
        """(port, mac, ip) of the n bound ports in binding order: a and b (the measured
        pair) at ``POSITION`` among the taps. libvirt's layout looks ports up one rule after
        another in binding order, so the position is the path's length there: ``middle`` is
        the average port of a full host, ``first`` libvirt's best case."""
        pair = [("pa", MAC_A, IP_A), ("pb", MAC_B, IP_B)][: min(n, 2)]
        taps = [
            (f"t{i}", f"52:54:00:78:{i >> 8:02x}:{i & 255:02x}", f"10.78.{i >> 8}.{i & 255}")
            for i in range(max(0, n - 2))
        ]
        k = {"first": 0, "middle": len(taps) // 2, "last": len(taps)}[POSITION]
        return taps[:k] + pair + taps[k:]

    def hooks_off(self) -> None:
        for fam in ("iptables", "ip6tables"):
            sh(
                "ip",
                "netns",
                "exec",
                self.host,
                "sysctl",
                "-q",
                "-w",
                f"net.bridge.bridge-nf-call-{fam}=0",
            )
        sh("ip", "-n", self.host, "link", "set", "br0", "type", "bridge", "nf_call_iptables", "0",
           "nf_call_ip6tables", "0")  # fmt: skip

    def flush(self) -> None:
        sh("ip", "netns", "exec", self.host, "nft", "flush", "ruleset")
        self.hooks_off()

    def delete(self) -> None:
        for ns in (self.host, self.a, self.b):
            delete_namespace(ns)


def iperf(topo: Topology, seconds: float) -> float:
    """Packets per second b received from a (64-byte UDP payloads, unlimited rate)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", topo.b, "iperf3", "-s", "-1", "-B", IP_B],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        out = sh("ip", "netns", "exec", topo.a, "iperf3", "-c", IP_B, "-u", "-l", "64", "-b", "0",
                 "-t", str(max(1, round(seconds))), "-J", timeout=seconds + 30)  # fmt: skip
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(5)
        if server.poll() is None:
            server.kill()
            server.wait()
    end = json.loads(out)["end"]["sum"]
    return (end["packets"] - end["lost_packets"]) / end["seconds"]


def measure(
    topo: Topology, plain: Topology, runs: int, seconds: float, name: str
) -> dict[str, Any]:
    """The bound configuration of ``topo`` against the unfiltered twin ``plain``, run by run.

    The two paths alternate (ABBA), so load from others hits both alike; the ratio is the
    median of the per-pair ratios.
    """
    bound, free, ratios = [], [], []
    for k in range(runs):
        if k % 2:
            u, b = iperf(plain, seconds), iperf(topo, seconds)
        else:
            b, u = iperf(topo, seconds), iperf(plain, seconds)
        bound.append(b)
        free.append(u)
        ratios.append(b / u)
    saved = sh("ip", "netns", "exec", topo.host, "nft", "list", "ruleset")
    ratio = statistics.median(ratios)
    log(
        f"{name}: {statistics.median(bound):.0f} pps vs unfiltered {statistics.median(free):.0f} pps: x{ratio:.2f}"
    )
    return {
        "ratio": round(ratio, 3),
        "bound_pps_median": round(statistics.median(bound)),
        "unfiltered_pps_median": round(statistics.median(free)),
        "ratio_all": [round(x, 3) for x in ratios],
        "ruleset_lines": len(saved.splitlines()),
        "ip_hooks": _hook_state(topo),
    }


def _hook_state(topo: Topology) -> dict[str, Any]:
    g = sh(
        "ip", "netns", "exec", topo.host, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables"
    ).strip()
    info = json.loads(sh("ip", "-n", topo.host, "-d", "-j", "link", "show", "dev", "br0"))
    return {
        "global_call_iptables": int(g),
        "br0_nf_call_iptables": info[0]["linkinfo"]["info_data"]["nf_call_iptables"],
    }


NWG_BIND = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from nwguard.api import Client
c = Client.open(config_dir=sys.argv[2] + "/etc", state_dir=sys.argv[2] + "/run")
args = json.load(sys.stdin)
if args["filter"]:
    c.nwfilter_define(args["filter"])
if hasattr(c, "nwfilter_binding_create_many"):
    c.nwfilter_binding_create_many(args["xmls"])
else:  # an nwguard from before issue 13 (--src)
    for x in args["xmls"]:
        c.nwfilter_binding_create(x)
"""


def nwguard_bind(topo: Topology, tmp: Path, n: int, filt: str, filter_xml: str | None) -> None:
    state = tmp / f"nwg-{filt}-{n}"
    shutil.rmtree(state, ignore_errors=True)
    xmls = [binding_of(p, m, i, filt) for p, m, i in topo.ports(n)]
    sh("ip", "netns", "exec", topo.host, sys.executable, "-c", NWG_BIND, str(SRC_USED), str(state),
       input=json.dumps({"xmls": xmls, "filter": filter_xml}))  # fmt: skip


def libvirt_bind(topo: Topology, tmp: Path, n: int) -> dict[str, Any]:
    uri = sh(str(LIBVIRT_REF), "start", topo.host).strip()
    f = tmp / "stateful.xml"
    f.write_text(STATEFUL)
    sh("virsh", "-q", "-c", uri, "nwfilter-define", str(f))
    t = time.perf_counter()
    for p, m, i in topo.ports(n):
        x = tmp / f"lv-{p}.xml"
        x.write_text(binding_of(p, m, i, "bench-stateful"))
        sh("virsh", "-q", "-c", uri, "nwfilter-binding-create", str(x))
    return {"uri": uri, "bind_s": round(time.perf_counter() - t, 1)}


def inner(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    prefix = f"nwgp{os.getpid()}"
    sizes = [int(x) for x in args.sizes.split(",")]
    made: list[Topology] = []
    try:
        made.append(Topology(f"{prefix}f", max(*sizes, args.stateful_n) - 2))
        made.append(Topology(f"{prefix}u", 0))  # the same path, never filtered
    except BaseException:
        for t in made:
            t.delete()
        raise
    topo, plain = made
    res: dict[str, Any] = {
        "bench": "packets",
        "note": "shared 2-core machine: bound and unfiltered runs alternate (ABBA) on twin "
        "topologies; ratio = median of the per-pair ratios; load average beside",
        "loadavg_start": os.getloadavg(),
        "runs": args.runs,
        "src": str(SRC_USED),
        "seconds_per_run": args.seconds,
        "measured_pair_position": POSITION,
        "l2": {},
        "stateful": {},
    }
    try:
        topo.hooks_off()
        plain.hooks_off()
        for n in sizes:
            topo.flush()
            nwguard_bind(topo, tmp, n, "clean-traffic", None)
            res["l2"][str(n)] = measure(
                topo, plain, args.runs, args.seconds, f"nwguard clean-traffic N={n}"
            )
        n = args.stateful_n
        topo.flush()
        nwguard_bind(topo, tmp, n, "bench-stateful", STATEFUL)
        res["stateful"]["nwguard"] = measure(
            topo, plain, args.runs, args.seconds, f"nwguard stateful N={n}"
        )
        if not args.no_libvirt and LIBVIRT_REF.exists():
            topo.flush()
            for fam in ("iptables", "ip6tables"):  # libvirt's layout needs them on everywhere
                sh(
                    "ip",
                    "netns",
                    "exec",
                    topo.host,
                    "sysctl",
                    "-q",
                    "-w",
                    f"net.bridge.bridge-nf-call-{fam}=1",
                )
            log(f"libvirt 9.0.0: binding {n} ports")
            info = libvirt_bind(topo, tmp, n)
            try:
                lv = measure(topo, plain, args.runs, args.seconds, f"libvirt stateful N={n}")
            finally:
                sh(str(LIBVIRT_REF), "stop", topo.host, check=False)
            lv["bind_s"] = info["bind_s"]
            res["stateful"]["libvirt_9_0_0"] = lv
            res["stateful"]["nwguard_ratio_over_libvirt_ratio"] = round(
                res["stateful"]["nwguard"]["ratio"] / lv["ratio"], 2
            )
        res["stateful"]["ports"] = n
    finally:
        topo.delete()
        plain.delete()
    res["loadavg_end"] = os.getloadavg()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--seconds", type=int, default=1)
    ap.add_argument("--sizes", default="1,100,1000")
    ap.add_argument("--stateful-n", type=int, default=100)
    ap.add_argument("--no-libvirt", action="store_true")
    ap.add_argument("--position", choices=("first", "middle", "last"), default="middle",
                    help="where the measured pair is bound among the N ports")  # fmt: skip
    ap.add_argument("--src", default=str(SRC), help="the nwguard source tree to measure")
    args = ap.parse_args(argv)
    global SRC_USED, POSITION
    SRC_USED = Path(args.src)
    POSITION = args.position
    if os.geteuid() != 0 or shutil.which("iperf3") is None:
        print(json.dumps({"bench": "packets", "skipped": "needs root and iperf3"}))
        return 0
    return measure_in_tmp("nwguard-packets-", lambda tmp: inner(args, tmp))


if __name__ == "__main__":
    sys.exit(main())
