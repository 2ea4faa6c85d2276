"""A real firewalld (Debian's package) in a sandbox, never the host's.

A private D-Bus system bus (its own dbus-daemon and socket in a temporary directory) and a
firewalld on it, both inside the lab's host network namespace; firewalld runs in its own
mount namespace (``ip netns exec`` makes one) where a copy of ``/etc/firewalld`` is
bind-mounted over the real one, so its config writes stay in the copy. nwguard finds that
bus through ``NWGUARD_FIREWALLD_BUS``. :meth:`Sandbox.close` stops both and removes the
directory, also when a test fails (the lab kills what is left in its namespaces).

Run as a script, this file is the launcher inside the sandbox: bind-mount, then exec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIREWALLD = "/usr/sbin/firewalld"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
"""


def unavailable_reason() -> str | None:
    for exe in (FIREWALLD, "/usr/bin/dbus-daemon", "/usr/bin/firewall-cmd"):
        if not Path(exe).exists():
            return f"{exe} is not installed (scripts/install.sh installs firewalld)"
    return None


class Sandbox:
    """One private bus and firewalld in namespace ``ns`` of ``lab``."""

    def __init__(self, lab: Any, ns: str, backend: str = "nftables", zones: bool = True) -> None:
        from nwguard.host import firewalld

        self.lab, self.ns, self.backend = lab, ns, backend
        self.dir = Path(tempfile.mkdtemp(prefix="nwg-fwd-"))
        self.etc = self.dir / "etc-firewalld"
        shutil.copytree("/etc/firewalld", self.etc, symlinks=True)
        conf = self.etc / "firewalld.conf"
        lines = [
            ln for ln in conf.read_text().splitlines() if not ln.startswith("FirewallBackend=")
        ]
        conf.write_text("\n".join([*lines, f"FirewallBackend={backend}", ""]))
        for rel in firewalld.zone_documents():  # whatever the host's copy holds
            (self.etc / rel).unlink(missing_ok=True)
        if zones:
            firewalld.install_zones(self.etc, firewalld.RecordingFirewalld(active=False))
        self.socket = self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        (self.dir / "bus.conf").write_text(BUS_CONFIG.format(socket=self.socket))
        self.bus: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "firewalld.log"
        self.client = firewalld.DBusFirewalld(self.address)

    # ---- life ----

    def start(self) -> Sandbox:
        if self.bus is None:
            with (self.dir / "dbus.log").open("ab") as log:
                self.bus = self.lab.popen(self.ns, "dbus-daemon", "--nofork", "--nopidfile",
                                          f"--config-file={self.dir / 'bus.conf'}",
                                          stdout=log, stderr=log)  # fmt: skip
            _wait(lambda: self.socket.exists(), 5.0, "the private D-Bus bus")
        self.start_firewalld()
        return self

    def start_firewalld(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        with self.log.open("ab") as log:
            self.proc = self.lab.popen(
                self.ns, sys.executable, __file__, str(self.etc), FIREWALLD, "--nofork",
                "--nopid", "--log-target", "console", env=env, stdout=log, stderr=log,
            )  # fmt: skip
        _wait(self._answers, 30.0, "firewalld", self.log)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"firewalld exited: {self.log.read_text()[-2000:]}")
        try:
            return self.client.running() and bool(self.client.zones())
        except Exception:  # noqa: BLE001 - still starting
            return False

    def stop_firewalld(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop_firewalld()
        self.start_firewalld()

    def firewall_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        """firewall-cmd on the sandbox's bus (it talks D-Bus, like nwguard)."""
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        return subprocess.run(["firewall-cmd", *args], capture_output=True, text=True,
                              env=env, timeout=60, check=False)  # fmt: skip

    def close(self) -> None:
        self.client.close()
        self.stop_firewalld()
        if self.bus is not None and self.bus.poll() is None:
            self.bus.terminate()
            self.bus.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait(cond: Any, timeout: float, what: str, log: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s {tail}")


def _launch(argv: list[str]) -> None:
    """Inside ``ip netns exec``'s private mount namespace: our /etc/firewalld, then exec."""
    etc, cmd = argv[0], argv[1:]
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "--bind", etc, "/etc/firewalld"], check=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    _launch(sys.argv[1:])
