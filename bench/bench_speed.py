#!/usr/bin/env python3
"""Issue 13's figures: bulk binding, one-shot commands, in a throw-away namespace.

Prints one JSON object (figures only, never asserts). The machine is shared: every figure is
a median over several runs, with the load average at start and end beside it. Needs root.
Everything happens in a network namespace this script makes and always deletes
(``nwg-speed-<pid>``) and in a temporary directory on a tmpfs it removes.

* ``bulk``: ``nwfilter_binding_create_many`` of N = 1000 tap ports to ``clean-traffic`` in
  one transaction (wall and CPU time), and ``nwfilter_binding_delete_many`` of them all;
* ``oneshot``: one ``nwguard`` process each for ``nwfilter-binding-create``, ``-delete`` and
  ``nwfilter-list`` with 1000 ports bound, without a daemon and served by nwguardd, against
  the interpreter's own start-up (``python -c pass``, ``-I -S``) measured the same way.

    sudo .venv/bin/python bench/bench_speed.py [--only bulk,oneshot] [--runs 5] [--src DIR]

The ``nwguard`` processes run the code of ``--src`` (default: this tree's ``src``), whatever
the venv's editable install points at: ``--src`` of another checkout times its code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import binding_xml, in_namespace, make_ports, port

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
N = 1000
SECTIONS = ("bulk", "oneshot")


def log(msg: str) -> None:
    print(f"[bench_speed] {msg}", file=sys.stderr, flush=True)


def med(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 2)


# ============================================================================ outer process


def outer(args: argparse.Namespace) -> int:
    """The measuring half in a namespace of its own (``harness.in_namespace``)."""
    argv = ["--only", args.only, "--runs", str(args.runs), "--src", args.src]
    return in_namespace("speed", __file__, argv)


# ============================================================================ inner process


class Workspace:
    def __init__(self, tmp: Path, name: str) -> None:
        self.root = tmp / name
        shutil.rmtree(self.root, ignore_errors=True)
        for fam in ("bridge", "inet"):
            subprocess.run(
                ["nft", "delete", "table", fam, "nwguard"], capture_output=True, check=False
            )
        self.config, self.state = self.root / "etc", self.root / "run"

    def client(self) -> Any:
        from nwguard.api import Client

        c = Client.open(config_dir=str(self.config), state_dir=str(self.state))
        c.nwfilter_list()  # the built-ins are installed outside the timed part
        return c

    def cli(self, *args: str) -> list[str]:
        exe = Path(sys.executable).with_name("nwguard")
        return [str(exe), "--config-dir", str(self.config), "--state-dir", str(self.state), *args]


def bulk(tmp: Path, runs: int, xmls: list[str]) -> dict[str, Any]:
    bind_w, bind_c, unbind_w, unbind_c, apply_s = [], [], [], [], []
    for r in range(runs):
        ws = Workspace(tmp, f"bulk-{r}")
        c = ws.client()
        eng = c.ctx.engine()
        real = eng.executor.apply
        took: list[float] = []

        def timed(batch: Any, real: Any = real, took: list[float] = took) -> None:
            t = time.perf_counter()
            real(batch)
            took.append(time.perf_counter() - t)

        eng.executor.apply = timed
        w, cpu = time.perf_counter(), time.process_time()
        c.nwfilter_binding_create_many(xmls[:N])
        bind_w.append(time.perf_counter() - w)
        bind_c.append(time.process_time() - cpu)
        apply_s.append(took[-1])
        w, cpu = time.perf_counter(), time.process_time()
        c.nwfilter_binding_delete_many([port(i) for i in range(N)])
        unbind_w.append(time.perf_counter() - w)
        unbind_c.append(time.process_time() - cpu)
        shutil.rmtree(ws.root)
    return {
        "ports": N,
        "runs": runs,
        "bind_many_s_median": med(bind_w),
        "bind_many_cpu_s_median": med(bind_c),
        "bind_many_s_all": [round(x, 3) for x in bind_w],
        "bind_many_nft_apply_s_median": med(apply_s),
        "unbind_many_s_median": med(unbind_w),
        "unbind_many_cpu_s_median": med(unbind_c),
        "goal_s": 0.3,
    }


def run(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-2:])}: exit {out.returncode}: {out.stderr.strip()}")
    return took


def floor(runs: int) -> dict[str, Any]:
    py = sys.executable
    out = {}
    for name, argv in {
        "python_c_pass_ms": [py, "-c", "pass"],
        "python_I_S_c_pass_ms": [py, "-I", "-S", "-c", "pass"],
    }.items():
        out[name] = ms(med([run(argv) for _ in range(runs * 3)]))
    return out


def import_times(ws: Workspace, xml_file: Path, env: dict[str, str]) -> dict[str, Any]:
    """``python -X importtime`` of one create process (bytecode cached): the biggest imports."""
    argv = [sys.executable, "-X", "importtime", "-m", "nwguard", "--config-dir", str(ws.config),
            "--state-dir", str(ws.state), "nwfilter-binding-create", str(xml_file)]  # fmt: skip
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stderr
    run(ws.cli("nwfilter-binding-delete", port(N)), env)
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1])))
    top = [(name.strip(), us) for name, us in rows if not name.startswith("  ")]
    return {
        "top_level_imports_ms": round(sum(us for _, us in top) / 1000, 1),
        "largest_ms": {n: round(us / 1000, 1) for n, us in sorted(top, key=lambda r: -r[1])[:8]},
    }


def oneshot_round(
    ws: Workspace, xml_file: Path, name: str, runs: int, env: dict[str, str]
) -> dict[str, Any]:
    create, delete, lst = [], [], []
    for _ in range(runs * 2):
        create.append(run(ws.cli("nwfilter-binding-create", str(xml_file)), env))
        delete.append(run(ws.cli("nwfilter-binding-delete", name), env))
        lst.append(run(ws.cli("nwfilter-list"), env))
    return {
        "binding_create_ms_median": ms(med(create)),
        "binding_delete_ms_median": ms(med(delete)),
        "list_ms_median": ms(med(lst)),
        "processes_each": len(create),
    }


def served(ws: Workspace, xml_file: Path, runs: int, env: dict[str, str]) -> dict[str, Any]:
    """The same commands while nwguardd serves the state directory (the CLI is its client)."""
    exe = str(Path(sys.executable).with_name("nwguardd"))
    argv = [exe, "--config-dir", str(ws.config), "--state-dir", str(ws.state), "--no-learning"]
    log_file = ws.root / "nwguardd.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (ws.state / "nwguardd.sock").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                return {"error": "nwguardd did not start", "log": log_file.read_text()[-2000:]}
            time.sleep(0.05)
        time.sleep(0.5)  # its start-up reconcile and first check
        run(ws.cli("nwfilter-list"), env)
        return oneshot_round(ws, xml_file, port(N), runs, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def oneshot(tmp: Path, runs: int, xmls: list[str], src: str) -> dict[str, Any]:
    ws = Workspace(tmp, "oneshot")
    c = ws.client()
    c.nwfilter_binding_create_many(xmls[:N])
    xml_file = tmp / "one.xml"
    xml_file.write_text(xmls[N])
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # CLI processes load cached bytecode
    env = {**os.environ, "NWGUARD_NO_DAEMON": "1", "PYTHONPATH": src}
    res: dict[str, Any] = {"bound": N, "src": src, "floor": floor(runs)}
    run(ws.cli("nwfilter-list"), env)  # bytecode cached before timing
    res["no_daemon"] = oneshot_round(ws, xml_file, port(N), runs, env)
    res["imports_of_a_create"] = import_times(ws, xml_file, env)
    res["daemon"] = served(
        ws, xml_file, runs, {k: v for k, v in env.items() if k != "NWGUARD_NO_DAEMON"}
    )
    res["goals_ms"] = {"create_delete_no_daemon": 50, "create_delete_daemon": 30, "list": 40}
    return res


def inner(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(SRC))
    tmp = Path(args.tmp)
    only = set(args.only.split(","))
    xmls = [binding_xml(i) for i in range(N + 1)]
    log(f"creating {N + 1} tap ports")
    make_ports(tmp, N + 1)
    res: dict[str, Any] = {
        "bench": "speed",
        "note": "shared 2-core machine: medians over runs, load average beside them",
        "loadavg_start": os.getloadavg(),
    }
    if "bulk" in only:
        log("bulk bind/unbind")
        res["bulk"] = bulk(tmp, args.runs, xmls)
    if "oneshot" in only:
        log("one-shot commands")
        res["oneshot"] = oneshot(tmp, args.runs, xmls, str(Path(args.src).resolve()))
    res["loadavg_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--src", default=str(SRC), help="the code the nwguard processes run")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
