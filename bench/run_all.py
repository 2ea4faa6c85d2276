#!/usr/bin/env python3
"""Run every ``bench/bench_*.py`` and print their JSON figures as one JSON document.

Each benchmark is a script that prints one JSON object on stdout (its progress, if any, goes
to stderr). Benchmarks measure; they never assert. A benchmark that fails or prints no JSON
is reported under its name as ``{"error": ...}`` and the others still run.

    python bench/run_all.py                  # all of them
    python bench/run_all.py bindings         # only bench_bindings.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_one(script: Path) -> dict:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, check=False
    )
    took = round(time.monotonic() - started, 1)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = proc.stdout.strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}, no JSON on stdout", "stdout_tail": tail}
    if proc.returncode != 0:
        result = {"exit_status": proc.returncode, **result}
    result.setdefault("bench_wall_s", took)
    return result


def main(argv: list[str]) -> int:
    wanted = set(argv)
    results = {}
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"== {script.name}", file=sys.stderr, flush=True)
        results[name] = run_one(script)
    print(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
