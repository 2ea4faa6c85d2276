#!/usr/bin/env python3
"""Binding benchmark: N guest ports bound to ``clean-traffic``, in a throw-away namespace.

Prints one JSON object (figures only, never asserts; medians over several runs, because the
machine may be noisy). Needs root. Everything happens in a network namespace this script
makes and always deletes (``nwg-bindings-<pid>``) and in a temporary directory it removes; the
host's own network and nftables ruleset are never touched.

What it measures (issue 3's list), with N = 10, 100, 1000 tap devices as ports, each with its
own MAC and IPv4 address:

* ``api_bind``: binding N ports through the Python API (one Client, a loop of
  ``nwfilter_binding_create``): total and per port;
* ``cli_bind``: one ``nwguard nwfilter-binding-create FILE`` process per port, start to exit
  (N = 1000 only when the estimate says it fits in ``--cli-budget`` seconds; extrapolated
  otherwise), and processes binding/unbinding one port while 1000 are bound;
* ``one_port_at_1000``: binding and unbinding one more port when 1000 are bound, engine time;
* ``rebuild_1000``: ``nwfilter_define`` of a changed ``clean-traffic`` that all 1000 use;
* ``kernel_objects``: chains, rules, sets and elements in nwguard's tables at each N, and the
  per-port fallback rule count from ``applied.json``;
* ``profile`` (unless ``--no-profile``): cProfile hotspots of binding 1000 ports and of one
  CLI process, and the CLI's import time.

    sudo .venv/bin/python bench/bench_bindings.py [--quick] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import binding_xml, in_namespace, make_ports, port

SIZES = (10, 100, 1000)
BIG = 1000
ONE_PORT_ROUNDS = 20
REBUILD_ROUNDS = 5
CLI_AT_BIG_ROUNDS = 10

TARGETS = {
    "api_bind_1000_total_s": 2.0,
    "cli_process_ms": 150.0,
    "one_bind_or_unbind_at_1000_engine_ms": 10.0,
    "rebuild_1000_s": 0.5,
    "rule_count": "constant in N",
}
LIBVIRT = {  # libvirt 9.0.0 on this machine (issue 3)
    "bind_s_per_port": 1.2,
    "rebuild_s_per_port": 1.7,
    "unbind_s_per_port": 0.7,
    "ebtables_rules_per_port": 29,
    "chains_per_port": 9,
}


# ============================================================================ outer process


def outer(args: argparse.Namespace) -> int:
    """The measuring half in a namespace of its own (``harness.in_namespace``)."""
    argv = [a for a in ("--quick", "--no-profile") if getattr(args, a[2:].replace("-", "_"))]
    return in_namespace("bindings", __file__, [*argv, "--cli-budget", str(args.cli_budget)])


# ============================================================================ helpers


def clean_traffic_variant(k: int) -> str:
    """clean-traffic plus one harmless rule (drop an unused local-experimental EtherType)."""
    from nwguard.builtin import builtin_filters
    from nwguard.xmlio.filter_xml import write_filter

    xml = write_filter(builtin_filters()["clean-traffic"])
    extra = (
        f"<rule action='drop' direction='out' priority='-700'>"
        f"<mac protocolid='0x{0x88B5 + (k % 2):04x}'/></rule></filter>"
    )
    return xml.replace("</filter>", extra, 1)


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 3)


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 1)


def log(msg: str) -> None:
    print(f"[bench_bindings] {msg}", file=sys.stderr, flush=True)


def reset_kernel() -> None:
    for fam in ("bridge", "inet"):
        subprocess.run(["nft", "delete", "table", fam, "nwguard"], capture_output=True, check=False)


class Workspace:
    """Config/state directories of one run; the kernel tables are reset with it."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.root = tmp / name
        shutil.rmtree(self.root, ignore_errors=True)
        reset_kernel()
        self.config, self.state = self.root / "etc", self.root / "run"

    def client(self) -> Any:
        from nwguard.api import Client

        c = Client.open(config_dir=str(self.config), state_dir=str(self.state))
        c.nwfilter_list()  # install the built-ins outside the timed part
        return c

    def cli(self, *args: str) -> list[str]:
        exe = Path(sys.executable).with_name("nwguard")
        return [str(exe), "--config-dir", str(self.config), "--state-dir", str(self.state), *args]

    def applied_ports(self) -> dict[str, dict[str, Any]]:
        """Each bound port's persisted contribution (applied/ports.json and its journal)."""
        applied = self.state / "applied"
        snap = json.loads((applied / "ports.json").read_text())
        ports = dict(snap["ports"])
        log = applied / f"ports.{snap['log']}.log"
        for line in log.read_text().splitlines() if log.is_file() else []:
            entry = json.loads(line)
            ports[entry["port"]] = entry["part"]
        return {p: part for p, part in ports.items() if part is not None}

    def drop(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Timed:
    """Wrap a callable and record how long each call took (for engine/apply splits)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.times = fn, []

    def __call__(self, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.times.append(time.perf_counter() - t)


def instrument(client: Any) -> tuple[Timed, Timed]:
    """Time the engine's nft apply and its rebuild for this client."""
    eng = client.ctx.engine()
    eng.executor.apply = apply_t = Timed(eng.executor.apply)
    eng.rebuild = rebuild_t = Timed(eng.rebuild)
    return apply_t, rebuild_t


# ============================================================================ measurements


def api_bind_run(ws: Workspace, n: int, xmls: list[str]) -> dict[str, Any]:
    client = ws.client()
    apply_t, _ = instrument(client)
    per = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        client.nwfilter_binding_create(xmls[i])
        per.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    return {"total": total, "per": per, "apply": sum(apply_t.times), "client": client}


def api_bind(
    tmp: Path, n: int, reps: int, xmls: list[str]
) -> tuple[dict[str, Any], Workspace, Any]:
    """Bind N ports ``reps`` times from scratch; keep the last run's state bound."""
    runs = []
    for r in range(reps):
        ws = Workspace(tmp, f"api-{n}-{r}")
        runs.append(api_bind_run(ws, n, xmls))
        if r < reps - 1:
            ws.drop()
    totals = [x["total"] for x in runs]
    later = [p for x in runs for p in x["per"][1:]]
    last = runs[-1]["per"]
    result = {
        "runs": reps,
        "total_s_median": r3(med(totals)),
        "total_s_all": [r3(t) for t in totals],
        "per_port_ms_median": ms(med(totals) / n),
        "first_bind_ms_median": ms(med([x["per"][0] for x in runs])),
        "later_bind_ms_median": ms(med(later)),
        "last_10_bind_ms_median": ms(med(last[-10:])),
        "nft_apply_share_of_total": round(med([x["apply"] / x["total"] for x in runs]), 3),
    }
    return result, ws, runs[-1]["client"]


def kernel_objects(ws: Workspace) -> dict[str, Any]:
    """Chains, rules, sets and elements in nwguard's tables; per-port chains apart.

    A chain is *per-port* when exactly one bound port uses it (by the ports' persisted
    contributions) while several are bound: the fallback for what cannot be shared.
    """
    users: dict[str, int] = {}
    ports = ws.applied_ports()
    for c in ports.values():
        for name in c.get("chains", []):
            users[name] = users.get(name, 0) + 1
    own = {n for n, k in users.items() if k == 1} if len(ports) > 1 else set()
    counts = dict.fromkeys(
        ("chains", "base_chains", "per_port_chains", "rules", "rules_in_per_port_chains",
         "sets", "set_elements", "maps", "map_elements"), 0
    )  # fmt: skip
    for fam in ("bridge", "inet"):
        out = subprocess.run(
            ["nft", "-j", "list", "table", fam, "nwguard"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            continue
        for item in json.loads(out.stdout)["nftables"]:
            _count(counts, *next(iter(item.items())), own)
    counts["rules_in_shared_chains"] = counts["rules"] - counts["rules_in_per_port_chains"]
    return counts


def _count(counts: dict[str, int], kind: str, obj: dict[str, Any], own: set[str]) -> None:
    if kind == "chain":
        counts["chains"] += 1
        counts["base_chains"] += "hook" in obj
        counts["per_port_chains"] += obj["name"] in own
    elif kind == "rule":
        counts["rules"] += 1
        counts["rules_in_per_port_chains"] += obj["chain"] in own
    elif kind in ("set", "map"):
        counts[f"{kind}s"] += 1
        counts[f"{kind}_elements"] += len(obj.get("elem", []))


def fallback_total(ws: Workspace) -> int:
    return sum(p.get("fallback_rules", 0) for p in ws.applied_ports().values())


def one_port_at_big(client: Any, xml: str, name: str) -> dict[str, Any]:
    """Bind/unbind one more port with BIG bound: engine time, and the whole API call."""
    from nwguard.xmlio.binding_xml import parse_binding

    eng = client.ctx.engine()
    apply_t = eng.executor.apply if isinstance(eng.executor.apply, Timed) else None
    b = parse_binding(xml)
    bind_e, unbind_e, bind_a, unbind_a = [], [], [], []
    for _ in range(ONE_PORT_ROUNDS):
        with client.ctx.lock():
            filters = client._filters.read_filters()
            t = time.perf_counter()
            eng.bind(b, filters)
            bind_e.append(time.perf_counter() - t)
            t = time.perf_counter()
            eng.unbind(name)
            unbind_e.append(time.perf_counter() - t)
    n_apply = len(apply_t.times) if apply_t else 0
    for _ in range(ONE_PORT_ROUNDS):
        t = time.perf_counter()
        client.nwfilter_binding_create(xml)
        bind_a.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.nwfilter_binding_delete(name)
        unbind_a.append(time.perf_counter() - t)
    applies = apply_t.times[n_apply - 2 * ONE_PORT_ROUNDS : n_apply] if apply_t else []
    return {
        "rounds": ONE_PORT_ROUNDS,
        "bound": len(client.ctx.engine().applied().ports),
        "bind_engine_ms_median": ms(med(bind_e)),
        "unbind_engine_ms_median": ms(med(unbind_e)),
        "nft_apply_ms_median": ms(med(applies)),
        "bind_api_call_ms_median": ms(med(bind_a)),
        "unbind_api_call_ms_median": ms(med(unbind_a)),
    }


def rebuild_at_big(client: Any, ws: Workspace) -> dict[str, Any]:
    apply_t, rebuild_t = instrument(client)
    defines = []
    for k in range(REBUILD_ROUNDS):
        xml = clean_traffic_variant(k)
        t = time.perf_counter()
        client.nwfilter_define(xml)
        defines.append(time.perf_counter() - t)
    still = len(ws.applied_ports())
    return {
        "rounds": REBUILD_ROUNDS,
        "ports": still,
        "define_s_median": r3(med(defines)),
        "define_s_all": [r3(x) for x in defines],
        "engine_rebuild_s_median": r3(med(rebuild_t.times)),
        "nft_apply_s_median": r3(med(apply_t.times)),
        "per_port_ms_median": ms(med(defines) / still) if still else None,
    }


def run_cli(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-2:])}: exit {out.returncode}: {out.stderr.strip()}")
    return took


def xml_files(tmp: Path, xmls: list[str]) -> list[Path]:
    d = tmp / "xml"
    d.mkdir(exist_ok=True)
    files = []
    for i, x in enumerate(xmls):
        f = d / f"{port(i)}.xml"
        f.write_text(x)
        files.append(f)
    return files


def cli_bind(tmp: Path, n: int, files: list[Path], env: dict[str, str]) -> dict[str, Any]:
    ws = Workspace(tmp, f"cli-{n}")
    ws.client()
    times = [run_cli(ws.cli("nwfilter-binding-create", str(files[i])), env) for i in range(n)]
    ws.drop()
    return {
        "processes": n,
        "measured": True,
        "total_s": r3(sum(times)),
        "per_process_ms_median": ms(med(times)),
        "per_process_ms_p90": ms(sorted(times)[int(0.9 * (n - 1))]),
        "first_10_ms_median": ms(med(times[:10])),
        "last_10_ms_median": ms(med(times[-10:])),
    }


def cli_at_big(ws: Workspace, file: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    binds, unbinds = [], []
    for _ in range(CLI_AT_BIG_ROUNDS):
        binds.append(run_cli(ws.cli("nwfilter-binding-create", str(file)), env))
        unbinds.append(run_cli(ws.cli("nwfilter-binding-delete", name), env))
    return {
        "rounds": CLI_AT_BIG_ROUNDS,
        "bound": len(ws.applied_ports()),
        "bind_process_ms_median": ms(med(binds)),
        "unbind_process_ms_median": ms(med(unbinds)),
    }


def interpreter_floor(env: dict[str, str]) -> dict[str, Any]:
    """Start-to-exit of a bare interpreter and of one that only imports the CLI."""
    bare, imp = [], []
    for _ in range(7):
        bare.append(run_cli([sys.executable, "-c", "pass"], env))
        imp.append(run_cli([sys.executable, "-c", "import nwguard.cli.main"], env))
    return {"python_start_ms_median": ms(med(bare)), "import_nwguard_cli_ms_median": ms(med(imp))}


# ============================================================================ profiling


def top_functions(stats: pstats.Stats, key: str, n: int = 15) -> list[dict[str, Any]]:
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = re.sub(r".*/(site-packages|src|lib/python3\.\d+)/", "", file)
        rows.append(
            {
                "function": f"{short}:{line}({fn})",
                "calls": nc,
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
            }
        )
    rows.sort(key=lambda r: r[key], reverse=True)
    return rows[:n]


def profile_api(tmp: Path, xmls: list[str]) -> tuple[dict[str, Any], Workspace]:
    ws = Workspace(tmp, "profile-api")
    client = ws.client()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for x in xmls[:BIG]:
        client.nwfilter_binding_create(x)
    prof.disable()
    took = time.perf_counter() - t
    stats = pstats.Stats(prof, stream=io.StringIO())
    return {
        "what": f"cProfile of binding {BIG} ports through the API",
        "wall_s_under_profiler": r3(took),
        "top_tottime": top_functions(stats, "tottime_s"),
        "top_cumtime": top_functions(stats, "cumtime_s", 25),
    }, ws


def profile_rebuild(ws: Workspace) -> dict[str, Any]:
    client = ws.client()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    client.nwfilter_define(clean_traffic_variant(1))
    prof.disable()
    took = time.perf_counter() - t
    stats = pstats.Stats(prof, stream=io.StringIO())
    return {
        "what": f"cProfile of nwfilter_define(clean-traffic) rebuilding {BIG} ports",
        "wall_s_under_profiler": r3(took),
        "top_tottime": top_functions(stats, "tottime_s"),
        "top_cumtime": top_functions(stats, "cumtime_s", 25),
    }


def profile_cli(ws: Workspace, file: Path, env: dict[str, str]) -> dict[str, Any]:
    out_file = ws.root / "cli.prof"
    argv = ws.cli("nwfilter-binding-create", str(file))
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out_file), *argv],
        env=env,
        check=True,
        capture_output=True,
    )
    stats = pstats.Stats(str(out_file), stream=io.StringIO())
    return {
        "what": f"cProfile of one nwfilter-binding-create process with {BIG} ports bound",
        "top_tottime": top_functions(stats, "tottime_s", 12),
        "top_cumtime": top_functions(stats, "cumtime_s", 20),
    }


def import_times(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``python -X importtime``: total, and the heaviest top-level and self-time imports."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m[1]), int(m[2]), len(m[3]) // 2, m[4]))
    top_level = sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])
    by_self = sorted(rows, key=lambda r: -r[0])
    return {
        "total_imports_ms": round(sum(r[1] for r in top_level) / 1000, 1),
        "top_level_cumulative_ms": {r[3]: round(r[1] / 1000, 1) for r in top_level[:12]},
        "top_self_ms": {r[3]: round(r[0] / 1000, 1) for r in by_self[:12]},
    }


# ============================================================================ inner process


def inner(args: argparse.Namespace) -> int:
    os.environ["NWGUARD_NO_DAEMON"] = "1"
    # A CLI process on a normal host loads cached bytecode; a developer shell may forbid it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    env = {**os.environ}
    tmp = Path(args.tmp)
    sizes = (10, 100) if args.quick else SIZES
    big = sizes[-1]
    reps = {10: 7, 100: 5, 1000: 3} if not args.quick else {10: 3, 100: 2}
    xmls = [binding_xml(i) for i in range(big + 1)]
    files = xml_files(tmp, xmls)
    log(f"creating {big + 1} tap ports")
    make_ports(tmp, big + 1)
    res: dict[str, Any] = {
        "bench": "bindings",
        "machine": machine(),
        "targets": TARGETS,
        "libvirt_9_0_0": LIBVIRT,
        "config_and_state_dir": str(tmp),
        "bytecode_cache": "on (PYTHONDONTWRITEBYTECODE removed for the CLI processes)",
    }
    res["api_bind"], res["kernel_objects"], res["fallback_rules_total"] = {}, {}, {}
    for n in sizes:
        log(f"API: binding {n} ports x{reps[n]}")
        res["api_bind"][str(n)], ws, client = api_bind(tmp, n, reps[n], xmls)
        res["kernel_objects"][str(n)] = kernel_objects(ws)
        res["fallback_rules_total"][str(n)] = fallback_total(ws)
        if n != big:
            ws.drop()
    log(f"one port bind/unbind at N={big}")
    res["one_port_at_1000"] = one_port_at_big(client, xmls[big], port(big))
    log(f"CLI processes at N={big}")
    res["cli_at_1000_bound"] = cli_at_big(ws, files[big], port(big), env)
    log(f"rebuild of {big} after redefining clean-traffic")
    res["rebuild_1000"] = rebuild_at_big(client, ws)
    ws.drop()
    res["cli_bind"] = run_cli_sizes(tmp, sizes, files, env, res, args.cli_budget)
    res["cli_floor"] = interpreter_floor(env)
    if not args.no_profile:
        res["profile"] = run_profiles(tmp, xmls, files, big, env)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["vs_targets"] = vs_targets(res, big)
    res["vs_libvirt"] = vs_libvirt(res, big)
    reset_kernel()
    print(json.dumps(res, indent=2))
    return 0


def run_cli_sizes(
    tmp: Path,
    sizes: tuple[int, ...],
    files: list[Path],
    env: dict[str, str],
    res: dict[str, Any],
    budget: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        if n < BIG:
            log(f"CLI: {n} processes")
            out[str(n)] = cli_bind(tmp, n, files, env)
            continue
        first = out["100"]["first_10_ms_median"] / 1000
        at_big = res["cli_at_1000_bound"]["bind_process_ms_median"] / 1000
        estimate = n * (first + at_big) / 2  # per-process time grows ~linearly with bound ports
        if estimate > budget:
            out[str(n)] = {
                "processes": n,
                "measured": False,
                "extrapolated_total_s": round(estimate, 1),
                "note": f"not run: estimated {estimate:.0f} s > budget {budget:.0f} s; "
                "extrapolated as N x mean(first-10 median at N=100, "
                "bind-process median at N=1000)",
            }
            continue
        log(f"CLI: {n} processes (estimated {estimate:.0f} s)")
        out[str(n)] = cli_bind(tmp, n, files, env)
    return out


def run_profiles(
    tmp: Path, xmls: list[str], files: list[Path], big: int, env: dict[str, str]
) -> dict[str, Any]:
    log("profiling")
    out: dict[str, Any] = {}
    if big == BIG:
        out["api_bind_1000"], ws = profile_api(tmp, xmls)
        out["rebuild_at_1000"] = profile_rebuild(ws)
        out["cli_bind_at_1000"] = profile_cli(ws, files[BIG], env)
        run_cli(ws.cli("nwfilter-binding-delete", port(BIG)), env)
        out["cli_bind_import_time"] = import_times(
            ws.cli("nwfilter-binding-create", str(files[BIG])), env
        )
        ws.drop()
    out["import_nwguard_cli"] = import_times(["-c", "import nwguard.cli.main"], env)
    return out


def code_info() -> dict[str, Any]:
    """Which nwguard was measured: its path, and the git commit and dirty files of its tree."""
    import nwguard

    src = Path(nwguard.__file__).resolve().parent
    git = ["git", "-C", str(src)]
    rev = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=False
    )
    return {
        "package": str(src),
        "git_head": rev.stdout.strip() or None,
        "uncommitted_files_in_package": len(dirty.stdout.splitlines())
        if rev.returncode == 0
        else None,
    }


def machine() -> dict[str, Any]:
    return {
        "code": code_info(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "nft": subprocess.run(
            ["nft", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def vs_targets(res: dict[str, Any], big: int) -> dict[str, Any]:
    k = str(big)
    objs = res["kernel_objects"]
    rules = [objs[n]["rules"] for n in objs]
    shared = [objs[n]["rules_in_shared_chains"] for n in objs]
    per_port = {n: round(objs[n]["rules_in_per_port_chains"] / int(n), 2) for n in objs}
    cli_ms = res["cli_at_1000_bound"]["bind_process_ms_median"]
    one = res["one_port_at_1000"]
    return {
        f"api_bind_{k}_total_s": [
            res["api_bind"][k]["total_s_median"],
            TARGETS["api_bind_1000_total_s"],
        ],
        f"cli_process_ms_at_{k}_bound": [cli_ms, TARGETS["cli_process_ms"]],
        "cli_process_ms_at_10_bound": [
            res["cli_bind"]["10"]["per_process_ms_median"],
            TARGETS["cli_process_ms"],
        ],
        f"bind_engine_ms_at_{k}": [
            one["bind_engine_ms_median"],
            TARGETS["one_bind_or_unbind_at_1000_engine_ms"],
        ],
        f"unbind_engine_ms_at_{k}": [
            one["unbind_engine_ms_median"],
            TARGETS["one_bind_or_unbind_at_1000_engine_ms"],
        ],
        f"rebuild_{k}_s": [res["rebuild_1000"]["define_s_median"], TARGETS["rebuild_1000_s"]],
        "rules_at_each_N": rules,
        "rule_count_constant": len(set(rules)) == 1,
        "rules_in_shared_chains_at_each_N": shared,
        "shared_rule_count_constant": len(set(shared)) == 1,
        "per_port_fallback_rules_per_port_at_each_N": per_port,
        "format": "[measured, target]",
    }


def vs_libvirt(res: dict[str, Any], big: int) -> dict[str, Any]:
    k = str(big)
    api_per_s = res["api_bind"][k]["per_port_ms_median"] / 1000
    cli_s = res["cli_at_1000_bound"]["bind_process_ms_median"] / 1000
    one = res["one_port_at_1000"]
    rb = res["rebuild_1000"]
    objs = res["kernel_objects"][k]
    return {
        "bind_per_port_api_x_faster": ratio(LIBVIRT["bind_s_per_port"], api_per_s),
        "bind_per_cli_process_x_faster": ratio(LIBVIRT["bind_s_per_port"], cli_s),
        "unbind_engine_x_faster": ratio(
            LIBVIRT["unbind_s_per_port"], one["unbind_engine_ms_median"] / 1000
        ),
        "rebuild_all_x_faster": ratio(
            LIBVIRT["rebuild_s_per_port"] * rb["ports"], rb["define_s_median"]
        ),
        f"libvirt_rules_at_{k}": LIBVIRT["ebtables_rules_per_port"] * big,
        f"nwguard_rules_at_{k}": objs["rules"],
        f"libvirt_chains_at_{k}": LIBVIRT["chains_per_port"] * big,
        f"nwguard_chains_at_{k}": objs["chains"],
    }


# ============================================================================ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10 and 100 only, fewer runs")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile/importtime part")
    ap.add_argument(
        "--cli-budget",
        type=float,
        default=180.0,
        help="run 1000 CLI processes only if estimated under this many seconds",
    )
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
