"""Run ``nwguardd`` as a separate process inside a lab's host namespace, and talk to it.

The daemon's sockets are files, so the test process reaches them from its own namespace: the
proxy (:mod:`nwguard.daemon.proxy`) is the client, exactly what the CLI uses.

>>> d = Daemon(lab); d.start()                              # doctest: +SKIP
>>> d.client.nwfilter_binding_create(binding_xml(...))      # doctest: +SKIP
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
import time
from pathlib import Path
from typing import Any

from nwguard.daemon.proxy import DaemonProxy, connect

from .lab import Lab

NWGUARDD = str(Path(sys.executable).with_name("nwguardd"))
NWGUARD = str(Path(sys.executable).with_name("nwguard"))


class Daemon:
    """One nwguardd with private directories (world-traversable: non-root clients reach its
    read-only socket), started in ``lab``'s host namespace; :meth:`close` when done (the lab
    kills it too)."""

    def __init__(self, lab: Lab, *args: str) -> None:
        self.lab, self.args = lab, args
        self.top = Path(tempfile.mkdtemp(prefix="nwguardd-test-"))
        self.top.chmod(0o755)
        self.config, self.state = self.top / "etc", self.top / "run"
        self.log_path = self.top / "nwguardd.log"
        self.proc: subprocess.Popen | None = None
        self._client: DaemonProxy | None = None
        self._log_pos = 0

    def close(self) -> None:
        """Stop the daemon (if running) and remove its directories."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.top, ignore_errors=True)

    @property
    def socket(self) -> Path:
        return self.state / "nwguardd.sock"

    def start(self, timeout: float = 20.0) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        logf = open(self.log_path, "ab")  # noqa: SIM115 - the process keeps it
        self.proc = self.lab.popen(
            self.lab.host_ns, NWGUARDD, "--config-dir", str(self.config), "--state-dir",
            str(self.state), "--log-level", "debug", *self.args, stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nwguardd exited {self.proc.returncode}:\n{self.log()}")
            got = connect(self.socket, timeout=0.5) if self.socket.exists() else None
            if got is not None and got[1].get("pid") == self.proc.pid:
                self._client = DaemonProxy(None, got[0], got[1], self.socket)
                return self
            if got is not None:
                got[0].close()
            time.sleep(0.05)
        raise AssertionError(f"nwguardd did not answer within {timeout}s:\n{self.log()}")

    @property
    def client(self) -> DaemonProxy:
        assert self._client is not None, "not started"
        return self._client

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._drop_client()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._drop_client()
        return self.proc.returncode

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def new_log(self) -> str:
        """What the daemon logged since the last call."""
        text = self.log()
        new, self._log_pos = text[self._log_pos :], len(text)
        return new

    def wait_log(self, needle: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return self.log()
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{self.log()}")

    def cli_argv(self, *argv: str) -> list[str]:
        return [NWGUARD, "--config-dir", str(self.config), "--state-dir", str(self.state), *argv]

    def cli(self, *argv: str, user: str | None = None, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """``nwguard`` on this daemon's directories (as ``user`` via setpriv when given)."""
        cmd = self.cli_argv(*argv)
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, **(env or {})})  # fmt: skip
        if check and out.returncode != 0:
            raise AssertionError(f"{argv} exited {out.returncode}: {out.stderr}")
        return out


def nft_json(lab: Lab, *args: str) -> dict[str, Any]:
    out = lab.run(lab.host_ns, "nft", "-j", *args, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        return {"nftables": []}
    return json.loads(out.stdout)


def vmap_ports(lab: Lab, role: str = "l2o") -> set[str]:
    """The ports in one of nwguard's dispatch maps, as the kernel has them now."""
    for item in nft_json(lab, "list", "map", "bridge", "nwguard", role)["nftables"]:
        if "map" in item:
            return {e[0] for e in item["map"].get("elem", [])}
    return set()


def wait_until(pred: Any, timeout: float = 5.0, step: float = 0.02) -> float | None:
    """Seconds until ``pred()`` was true, or None after ``timeout``."""
    t0 = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if pred():
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(step)


SIGKILL = signal.SIGKILL
