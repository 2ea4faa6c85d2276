"""What the binding benchmarks share: their ports and bindings, and running their measuring
half in a throw-away network namespace that is always deleted.

Not a benchmark itself (``run_all.py`` runs ``bench_*.py`` only).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def port(i: int) -> str:
    return f"vnet{i}"


def binding_of(port: str, mac: str, ip: str, filt: str) -> str:
    """A binding of ``port`` (its owner named after it) to ``filt`` with ``IP``."""
    return (
        f"<filterbinding><owner><name>{port}</name><uuid>{uuid.uuid5(uuid.NAMESPACE_OID, port)}"
        f"</uuid></owner><portdev name='{port}'/><mac address='{mac}'/><filterref filter='{filt}'>"
        f"<parameter name='IP' value='{ip}'/></filterref></filterbinding>"
    )


def binding_xml(i: int) -> str:
    """Port ``i``'s binding to ``clean-traffic``, with its own MAC and IPv4 address."""
    n = i + 1
    mac = f"52:54:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"
    ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    owner = uuid.uuid5(uuid.NAMESPACE_OID, f"nwguard-bench-{i}")
    return (
        f"<filterbinding><owner><name>guest{i}</name><uuid>{owner}</uuid></owner>"
        f"<portdev name='{port(i)}'/><mac address='{mac}'/>"
        f"<filterref filter='clean-traffic'><parameter name='IP' value='{ip}'/></filterref>"
        "</filterbinding>"
    )


def make_ports(tmp: Path, count: int) -> None:
    """``count`` tap ports ``vnet0``... in this process's namespace, up."""
    batch = tmp / "ports.batch"
    lines = [f"tuntap add {port(i)} mode tap" for i in range(count)]
    lines += [f"link set {port(i)} up" for i in range(count)]
    batch.write_text("\n".join(lines) + "\n")
    subprocess.run(["ip", "-batch", str(batch)], check=True)


def tmpfs_dir() -> str | None:
    """A tmpfs directory for the config and state (None: the default temp dir): nwguard's
    state lives in /run/nwguard, a tmpfs on a standard host."""
    try:
        mounts = Path("/proc/mounts").read_text().split("\n")
    except OSError:
        return None
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and parts[2] == "tmpfs" and parts[1] in ("/run", "/dev/shm"):
            return parts[1]
    return None


def in_namespace(bench: str, script: str, argv: list[str]) -> int:
    """Run ``script --inner --tmp DIR *argv`` in a namespace of its own and print what it
    printed; the namespace, its processes and DIR (on a tmpfs) go whatever happens."""
    if os.geteuid() != 0:
        print(json.dumps({"bench": bench, "skipped": "needs root"}))
        return 0
    ns = f"nwg-{bench}-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix=f"nwguard-bench-{bench}-", dir=tmpfs_dir()))
    inner: subprocess.Popen[str] | None = None
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        cmd = [sys.executable, str(Path(script).resolve()), "--inner", "--tmp", str(tmp), *argv]
        inner = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE, text=True
        )
        out, _ = inner.communicate()
        if inner.returncode != 0:
            print(
                json.dumps(
                    {"bench": bench, "error": f"measuring process exited {inner.returncode}"}
                )
            )
            return 1
        sys.stdout.write(out)
        return 0
    except KeyboardInterrupt:
        print(json.dumps({"bench": bench, "error": "interrupted"}))
        return 130
    finally:
        _cleanup(ns, tmp, inner)
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupt(signum: int, _frame: Any) -> None:
    """A SIGTERM or SIGHUP handler: unwind as Ctrl-C does, so that cleanup runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def measure_in_tmp(prefix: str, measure: Callable[[Path], dict[str, Any]]) -> int:
    """Print ``measure(DIR)`` as JSON; DIR, a temporary directory, goes whatever happens
    (a kill included)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        print(json.dumps(measure(tmp), indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def delete_namespace(ns: str) -> None:
    """Kill the processes in ``ns`` (ours: the namespace is ours) and delete it."""
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _cleanup(ns: str, tmp: Path, inner: subprocess.Popen[str] | None) -> None:
    """Stop what we started (by pid), delete our namespace and our temp dir."""
    with contextlib.suppress(BaseException):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up even on a 2nd Ctrl-C
    if inner is not None and inner.poll() is None:
        inner.kill()
        inner.wait()
    delete_namespace(ns)
    shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
