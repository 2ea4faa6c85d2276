#!/usr/bin/env python3
"""nwguard's CPU cost per bridged frame, ruleset against ruleset, read to a few nanoseconds.

Prints one JSON object (figures only, never asserts). Needs root and a C compiler. iperf3
(``bench_packets.py``) measures what a user sees, but on this shared 2-core machine its pair
ratios spread by ±0.1; this measures the cost itself. A tiny C sender (compiled into a
temporary directory) writes valid 64-byte-payload IPv4/UDP frames from guest ``a`` through a
bridge to guest ``b`` from a packet socket; veth delivers in the sender's context, so the
bridge, its hooks and every nftables rule run inside the sender's system time, and the
figure is the sending thread's CPU time per frame (``CLOCK_THREAD_CPUTIME_ID``), less
disturbed by other processes than wall time.

Rulesets: ``none`` (no table) and, per nwguard source tree given (``--src NAME=PATH``, default
this tree as ``now``), the ruleset that tree installs for two ports bound to ``--filter``
(``clean-traffic``, or ``stateful``: clean-traffic plus a TCP rule, whose copies read the
connection state). Every tree binds in the same namespace; its ruleset is saved and loaded
again run by run, interleaved with the others (ABAB...), so a busy moment hits all alike.
The figure is the median over ``--runs`` runs of ``--frames`` frames; nwguard's cost is a
ruleset's median less ``none``'s. The bridge's own IP hooks stay as the last binding left
them (on, for ``stateful``), for ``none`` too. Everything happens in namespaces ``nwgf<pid>-*``, deleted
at the end whatever happens.

    sudo .venv/bin/python bench/bench_frame_cost.py [--src main=/path/to/other/src] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import binding_of, delete_namespace, measure_in_tmp

HERE = Path(__file__).resolve().parent
STATEFUL = (
    "<filter name='bench-stateful' chain='root'><filterref filter='clean-traffic'/>"
    "<rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule>"
    "</filter>"
)
GUESTS = (
    ("a", "pa", "52:54:00:77:00:01", "10.77.0.1"),
    ("b", "pb", "52:54:00:77:00:02", "10.77.0.2"),
)

SENDER = r"""
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
static unsigned short csum(unsigned short *p, int n) {
  unsigned long s = 0;
  for (; n > 1; n -= 2) s += *p++;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s;
}
int main(int argc, char **argv) {  /* dev count: prints CPU ns per frame */
  long n = atol(argv[2]);
  unsigned char f[14 + 28 + 64] = {0x52, 0x54, 0, 0x77, 0, 2, 0x52, 0x54, 0, 0x77, 0, 1, 8, 0};
  struct iphdr *ip = (void *)(f + 14);
  ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = 17; ip->tot_len = htons(92);
  ip->saddr = inet_addr("10.77.0.1"); ip->daddr = inet_addr("10.77.0.2");
  ip->check = csum((void *)ip, 20);
  unsigned short *udp = (void *)(f + 34);
  udp[0] = htons(4000); udp[1] = htons(9); udp[2] = htons(72);
  int s = socket(AF_PACKET, SOCK_RAW, 0);
  struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_ifindex = if_nametoindex(argv[1])};
  if (s < 0 || bind(s, (void *)&a, sizeof a) < 0) { perror("socket"); return 1; }
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  for (long i = 0; i < n; i++)
    if (send(s, f, sizeof f, 0) < 0) { perror("send"); return 1; }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  printf("%.1f\n", ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / n);
  return 0;
}
"""

BIND = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from nwguard.api import Client
c = Client.open(config_dir=sys.argv[2] + "/etc", state_dir=sys.argv[2] + "/run")
args = json.load(sys.stdin)
if args["filter_xml"]:
    c.nwfilter_define(args["filter_xml"])
for x in args["xmls"]:
    c.nwfilter_binding_create(x)
"""


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, input=input, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


class Lab:
    def __init__(self, prefix: str) -> None:
        self.host = f"{prefix}-h"
        self.names = [self.host] + [f"{prefix}-{g}" for g, *_ in GUESTS]
        try:
            self._build(prefix)
        except BaseException:
            self.delete()
            raise

    def _build(self, prefix: str) -> None:
        for ns in self.names:
            sh("ip", "netns", "add", ns)
        h = ("ip", "-n", self.host)
        sh(*h, "link", "add", "br0", "up", "type", "bridge", "stp_state", "0")
        for g, port, mac, _ip in GUESTS:
            sh(
                *h,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                f"{prefix}-{g}",
            )
            sh("ip", "-n", f"{prefix}-{g}", "link", "set", "eth0", "address", mac, "up")
            sh(*h, "link", "set", port, "master", "br0", "up")
        sh(
            "bridge",
            "-n",
            self.host,
            "fdb",
            "replace",
            GUESTS[1][2],
            "dev",
            "pb",
            "master",
            "static",
        )
        self.sender_ns = f"{prefix}-a"

    def nft(self, *args: str, input: str | None = None) -> str:
        return sh("ip", "netns", "exec", self.host, "nft", *args, input=input)

    def delete(self) -> None:
        for ns in self.names:
            delete_namespace(ns)


def ruleset_of(lab: Lab, src: str, tmp: Path, filt: str) -> tuple[str, int]:
    """The ruleset ``src``'s nwguard installs for the two ports (counter elements left out),
    and its number of rules."""
    lab.nft("flush", "ruleset")
    name = "bench-stateful" if filt == "stateful" else "clean-traffic"
    state = Path(tempfile.mkdtemp(dir=tmp))
    xmls = [binding_of(p, m, i, name) for _g, p, m, i in GUESTS]
    sh("ip", "netns", "exec", lab.host, sys.executable, "-c", BIND, src, str(state),
       input=json.dumps({"xmls": xmls, "filter_xml": STATEFUL if filt == "stateful" else None}))  # fmt: skip
    text = lab.nft("list", "ruleset")
    rules = sum(1 for o in json.loads(lab.nft("-j", "list", "ruleset"))["nftables"] if "rule" in o)
    # dynamic counter sets list what they counted; a ruleset file cannot hold those elements
    text = re.sub(r"(\n\t(?:set|map) (?:drops|seen_out|seen_in) \{[^}]*?)\n\t\telements = \{[^}]*\}",
                  r"\1", text, flags=re.DOTALL)  # fmt: skip
    return text, rules


def inner(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sender = tmp / "send"
    (tmp / "send.c").write_text(SENDER)
    sh(args.cc, "-O2", "-o", str(sender), str(tmp / "send.c"))
    srcs = dict(x.split("=", 1) for x in args.src) or {"now": str(HERE.parent / "src")}
    lab = Lab(f"nwgf{os.getpid()}")
    try:
        made = {"none": ("", 0)} | {
            n: ruleset_of(lab, p, tmp, args.filter) for n, p in srcs.items()
        }
        rulesets = {k: text for k, (text, _n) in made.items()}
        cpu: dict[str, list[float]] = {k: [] for k in rulesets}
        for _ in range(args.runs):
            for k, text in rulesets.items():
                lab.nft("flush", "ruleset")
                if text:
                    lab.nft("-f", "-", input=text)
                run = ("ip", "netns", "exec", lab.sender_ns, str(sender), "eth0")
                sh(*run, "2000")  # warm up
                cpu[k].append(float(sh(*run, str(args.frames))))
    finally:
        lab.delete()
    med = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "bench": "frame_cost",
        "filter": args.filter,
        "frames_per_run": args.frames,
        "runs": args.runs,
        "loadavg": os.getloadavg(),
        "cpu_ns_per_frame_median": {k: round(v) for k, v in med.items()},
        "cpu_ns_per_frame_min_max": {k: [round(min(v)), round(max(v))] for k, v in cpu.items()},
        "nwguard_ns_per_frame": {k: round(v - med["none"]) for k, v in med.items() if k != "none"},
        "kernel_rules": {k: n for k, (_t, n) in made.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--filter", choices=("clean-traffic", "stateful"), default="clean-traffic")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--cc", default="cc")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which(args.cc) is None:
        print(json.dumps({"bench": "frame_cost", "skipped": "needs root and a C compiler"}))
        return 0
    return measure_in_tmp("nwguard-frame-cost-", lambda tmp: inner(args, tmp))


if __name__ == "__main__":
    sys.exit(main())
