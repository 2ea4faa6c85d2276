#!/usr/bin/env python3
"""Counter cost: 64-byte UDP frames through a ``clean-traffic`` port, with and without counters.

Prints one JSON object (figures only, never asserts). Needs root. Works in a network
namespace it makes and always deletes (``nwg-counters-<pid>``, with a temporary directory): a bridge with two veth ports, both
bound to ``clean-traffic``; their other ends stay in the namespace, unbridged, as "guests".
One guest end sends valid 64-byte IPv4/UDP frames (its port's MAC and IP) to the other
through the bridge, from a packet socket in a tight loop; the time per frame is the loop's
wall time over the frames (veth delivers in the sender's context, so the bridge hooks and
nwguard's rules are inside it). Three rulesets, interleaved run by run so that a busy moment
of the shared machine hits them alike:

* ``none``: no nwguard table at all (the bridge alone);
* ``no_counters``: nwguard's full ruleset with the drop counting removed (counting rules,
  ``drops``): what nwguard installed before issue 12;
* ``counters``: nwguard's ruleset as it is. Frames that pass are counted by no rule (the
  interfaces' statistics count them), so this should equal ``no_counters``.

The figure is the sending thread's CPU time per frame (system time included: veth runs the
receiving side, bridge and nft included, in the sender's softirq), less disturbed by other
processes than wall time, which is printed too. Medians over runs of ``--frames`` frames;
``counters - no_counters`` is the cost of counting per frame. The machine is shared: read
the spread (min/max) too.

    sudo .venv/bin/python bench/bench_counters.py [--frames 100000] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import in_namespace

MACS = ("52:54:00:00:c0:01", "52:54:00:00:c0:02")
IPS = ("10.77.0.1", "10.77.0.2")


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def frame() -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    f = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP(src=IPS[0], dst=IPS[1]) / UDP(sport=4000, dport=9)
              / Raw(b"x" * 22))  # fmt: skip
    assert len(f) == 64
    return f


def send(n: int, data: bytes) -> tuple[float, float]:
    """Wall and CPU time (this thread's, system time included) to send ``n`` frames."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("g0", 0))
    send_ = s.send
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        send_(data)
    took = time.perf_counter() - t0, time.thread_time() - c0
    s.close()
    return took


def rx_packets(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/rx_packets").read_text())


def without_counting(cmds: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The full batch minus what the counters add: the counting rules of the port chains,
    ``drops`` and its declaration chain."""
    from nwguard.backends.nft import layout

    counting = {layout.DROPS, layout.DROPS_ANCHOR}
    out = []
    for c in cmds:
        body = next(iter(c.values()))
        kind, obj = next(iter(body.items()))
        if kind in ("set", "chain") and obj.get("name") in counting:
            continue
        if kind == "rule" and (
            obj["chain"] in counting or "@" + layout.DROPS in json.dumps(obj["expr"][-1:])
        ):
            continue
        out.append(c)
    return out


def inner(args: argparse.Namespace) -> dict[str, Any]:
    from nwguard.api import Client
    from nwguard.backends.nft.executor import apply
    from nwguard.backends.nft.render import NftBatch, to_nft
    from nwguard.compile.kernel_state import full

    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "br0", "type", "bridge")
    sh("ip", "link", "set", "br0", "up")
    for i in (0, 1):
        sh("ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", f"g{i}")
        sh("ip", "link", "set", f"g{i}", "address", MACS[i])
        sh("ip", "link", "set", f"p{i}", "master", "br0")
        for dev in (f"p{i}", f"g{i}"):
            sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("ip", "link", "set", dev, "up")
    # the frames go to g1's MAC: the bridge must know it is behind p1
    sh("bridge", "fdb", "add", MACS[1], "dev", "p1", "master", "static")
    top = Path(args.tmp)  # made and removed by harness.in_namespace
    c = Client.open(str(top / "etc"), str(top / "run"))
    for i in (0, 1):
        c.nwfilter_binding_create(
            "<filterbinding><owner><name>vm</name>"
            f"<uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a5{i}</uuid></owner>"
            f"<portdev name='p{i}'/><mac address='{MACS[i]}'/><filterref filter='clean-traffic'>"
            f"<parameter name='IP' value='{IPS[i]}'/></filterref></filterbinding>"
        )
    nft = to_nft(full(c.ctx.engine().applied()))
    plain = NftBatch(tuple(without_counting(nft.commands)), nft.typeof_sets)

    def ruleset(kind: str) -> None:
        for fam in ("bridge", "inet"):
            subprocess.run(
                ["nft", "delete", "table", fam, "nwguard"], capture_output=True, check=False
            )
        if kind != "none":
            apply(nft if kind == "counters" else plain)

    data = frame()
    kinds = ("none", "no_counters", "counters")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    delivered: dict[str, list[int]] = {k: [] for k in kinds}
    rules: dict[str, int] = {}
    counted: list[int] = []
    for _ in range(args.runs):
        for k in kinds:
            ruleset(k)
            if k not in rules:
                listing = json.loads(sh("nft", "-j", "list", "ruleset"))["nftables"]
                rules[k] = sum(1 for o in listing if "rule" in o)
            send(2000, data)  # warm up
            before = rx_packets("g1")
            wall, used = send(args.frames, data)
            time.sleep(0.05)
            delivered[k].append(rx_packets("g1") - before)
            times[k].append(wall / args.frames * 1e9)
            cpu[k].append(used / args.frames * 1e9)
            if k == "counters":  # the interface's own count: every run's frames so far
                counted.append(c.nwfilter_binding_stats("p0").sent.accepted.packets)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "frames_per_run": args.frames,
        "runs": args.runs,
        "cpu_ns_per_frame_median": {k: round(v, 1) for k, v in med.items()},
        "cpu_ns_per_frame_min_max": {
            k: [round(min(v), 1), round(max(v), 1)] for k, v in cpu.items()
        },
        "wall_ns_per_frame_median": {k: round(statistics.median(v), 1) for k, v in times.items()},
        "counting_cost_ns_per_frame": round(med["counters"] - med["no_counters"], 1),
        "nwguard_cost_ns_per_frame": round(med["no_counters"] - med["none"], 1),
        "delivered_per_run_min": {k: min(v) for k, v in delivered.items()},
        "kernel_rules": rules,
        "note": "2-core machine shared with other engineers' runs; python send loop included",
        "p0_sent_accepted_per_counters_run": sorted(set(counted)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(inner(args)))
        return 0
    return in_namespace(
        "counters", __file__, ["--frames", str(args.frames), "--runs", str(args.runs)]
    )


if __name__ == "__main__":
    sys.exit(main())
