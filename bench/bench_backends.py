#!/usr/bin/env python3
"""Both firewall backends side by side: N ports bound to ``clean-traffic``.

Prints one JSON object (figures only, never asserts). Needs root. Runs in a network
namespace it makes and always deletes (``nwg-backends-<pid>``), with a temporary directory it
removes. Per backend (``nftables``, ``iptables``) and N (100, 1000):

* ``bind_s``: binding N ports through the Python API (one Client), total and per port;
* ``one_port_ms``: binding, then unbinding, one more port with N bound;
* ``rebuild_s``: ``nwfilter_define`` of a changed ``clean-traffic`` all N use;
* ``kernel``: chains and rules nwguard has in the kernel (nft tables ``nwguard``, or the
  ebtables ``nat`` / ip(6)tables ``filter`` chains of libvirt's layout).

    sudo .venv/bin/python bench/bench_backends.py [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bindings import LIBVIRT, Workspace, clean_traffic_variant
from harness import binding_xml, in_namespace, make_ports

IPT = (("ebtables", None), ("iptables", "filter"), ("ip6tables", "filter"))


def reset_iptables() -> None:
    for tool, table in IPT:
        for op in ("-F", "-X"):
            argv = [f"{tool}-nft", "-t", table or "nat", op]
            subprocess.run(argv, capture_output=True, check=False)


def kernel(backend: str) -> dict[str, int]:
    if backend == "nftables":
        out = subprocess.run(
            ["nft", "-j", "list", "ruleset"], capture_output=True, text=True, check=False
        )
        objs = json.loads(out.stdout)["nftables"]
        mine = [
            o
            for o in objs
            if any(v.get("table") == "nwguard" for v in o.values() if isinstance(v, dict))
        ]
        return {"chains": sum("chain" in o for o in mine), "rules": sum("rule" in o for o in mine),
                "set_elements": sum(len((o.get("set") or o.get("map") or {}).get("elem", []))
                                    for o in mine)}  # fmt: skip
    chains = rules = 0
    for tool, table in IPT:
        argv = [f"{tool}-nft-save", *(["-t", table] if table else [])]
        text = subprocess.run(argv, capture_output=True, text=True, check=False).stdout.splitlines()
        builtin = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
        chains += sum(ln.startswith(":") and ln[1:].split()[0] not in builtin for ln in text)
        rules += sum(ln.startswith("-A ") for ln in text)
    return {"chains": chains, "rules": rules}


def measure(tmp: Path, backend: str, n: int) -> dict[str, Any]:
    os.environ["NWGUARD_FIREWALL_BACKEND"] = backend
    reset_iptables()
    ws = Workspace(tmp, f"{backend}-{n}")  # (also deletes nwguard's nft tables)
    client = ws.client()
    xmls = [binding_xml(i) for i in range(n + 1)]
    t0 = time.perf_counter()
    for xml in xmls[:n]:
        client.nwfilter_binding_create(xml)
    bind = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.nwfilter_binding_create(xmls[n])
    one_bind = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.nwfilter_binding_delete(f"vnet{n}")
    one_unbind = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.nwfilter_define(clean_traffic_variant(1))
    rebuild = time.perf_counter() - t0
    counts = kernel(backend)
    ws.drop()
    return {
        "bind_s": round(bind, 3), "bind_ms_per_port": round(bind / n * 1000, 2),
        "one_port_ms": {"bind": round(one_bind * 1000, 1), "unbind": round(one_unbind * 1000, 1)},
        "rebuild_s": round(rebuild, 3), "kernel": counts,
    }  # fmt: skip


def inner(args: argparse.Namespace) -> int:
    tmp = Path(args.tmp)
    sizes = [int(x) for x in args.sizes.split(",")]
    make_ports(tmp, max(sizes) + 1)
    out: dict[str, Any] = {"bench": "backends", "libvirt_same_machine": LIBVIRT}
    for backend in ("nftables", "iptables"):
        out[backend] = {str(n): measure(tmp, backend, n) for n in sizes}
    print(json.dumps(out, indent=2))
    return 0


def outer(args: argparse.Namespace) -> int:
    """The measuring half in a namespace of its own (``harness.in_namespace``)."""
    return in_namespace("backends", __file__, ["--sizes", args.sizes])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--sizes", default="100,1000")
    args = p.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
