"""The demo's firewalld part (issue 11), shown when Debian's firewalld is installed.

A private D-Bus system bus and a real firewalld (nftables backend) on it, both in the
sandbox's host namespace; firewalld in its own mount namespace (``ip netns exec`` gives one)
on a copy of ``/etc/firewalld``: the machine's firewalld is never asked or touched. nwguard
reaches it through ``NWGUARD_FIREWALLD_BUS``. Shown: ``net-start`` refused without the
``libvirt`` zone (and nothing left), ``nwguard firewalld-install``, the bridge in the zone
with DHCP and DNS working, and ``nwguardd`` putting the bridge back within a second after
``firewall-cmd --reload`` and after a firewalld restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nwguard_demo import net as dn
from nwguard_demo.sandbox import Sandbox

FIREWALLD = "/usr/sbin/firewalld"
# Inside ``ip netns exec``'s mount namespace: our copy over /etc/firewalld, then firewalld.
LAUNCH = (
    "import os, subprocess, sys; "
    "subprocess.run(['mount', '--make-rprivate', '/'], check=True); "
    "subprocess.run(['mount', '--bind', sys.argv[1], '/etc/firewalld'], check=True); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)
BUS_CONFIG = """<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/><allow own="*"/><allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
"""


def available() -> bool:
    return all(
        Path(p).exists() for p in (FIREWALLD, "/usr/bin/dbus-daemon", "/usr/bin/firewall-cmd")
    )


class PrivateFirewalld:
    """dbus-daemon + firewalld in namespace ``ns`` on a private bus; :meth:`close` stops both."""

    def __init__(self, ns: str) -> None:
        from nwguard.host.firewalld import DBusFirewalld, zone_documents

        self.ns = ns
        self.dir = Path(tempfile.mkdtemp(prefix="nwguard-demo-fwd-"))
        self.etc = self.dir / "etc-firewalld"
        shutil.copytree("/etc/firewalld", self.etc, symlinks=True)
        conf = self.etc / "firewalld.conf"
        keep = [ln for ln in conf.read_text().splitlines() if not ln.startswith("FirewallBackend=")]
        conf.write_text("\n".join([*keep, "FirewallBackend=nftables", ""]))
        for rel in zone_documents():  # start without nwguard's zones, whatever the host has
            (self.etc / rel).unlink(missing_ok=True)
        self.socket = self.dir / "bus"
        self.address = f"unix:path={self.socket}"
        (self.dir / "bus.conf").write_text(BUS_CONFIG.format(socket=self.socket))
        self.client = DBusFirewalld(self.address)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.firewalld: subprocess.Popen[bytes] | None = None

    def _popen(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.dir / "log").open("ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], env=env,
                                    stdout=log, stderr=log)  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self._popen(
            ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={self.dir}/bus.conf"]
        )
        _wait(self.socket.exists, 5.0, "the private bus")
        self.start_firewalld()

    def start_firewalld(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        self.firewalld = self._popen(
            [sys.executable, "-c", LAUNCH, str(self.etc), FIREWALLD, "--nofork", "--nopid",
             "--log-target", "console"], env,
        )  # fmt: skip
        _wait(self._answers, 30.0, "firewalld")

    def _answers(self) -> bool:
        try:
            return self.client.running() and bool(self.client.zones())
        except Exception:  # noqa: BLE001 - still starting
            return False

    def stop_firewalld(self) -> None:
        if self.firewalld is not None:
            _stop(self.firewalld)
            self.firewalld = None

    def firewall_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        return subprocess.run(["firewall-cmd", *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)  # fmt: skip

    def close(self) -> None:
        self.client.close()
        for proc in reversed(self.procs):
            _stop(proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.05)


def back_in_zone(fw: PrivateFirewalld, bridge: str, within: float) -> float | None:
    """Seconds until ``bridge`` is in zone libvirt again, or None after ``within``."""
    t0 = time.monotonic()
    while fw.client.zone_of_interface(bridge) != "libvirt":
        if time.monotonic() - t0 > within:
            return None
        time.sleep(0.01)
    return time.monotonic() - t0


@contextlib.contextmanager
def private_firewalld(ns: str) -> Iterator[PrivateFirewalld]:
    from nwguard.host.firewalld import BUS_ENV

    fw = PrivateFirewalld(ns)
    old = os.environ.get(BUS_ENV)
    os.environ[BUS_ENV] = fw.address  # nwguard's commands and nwguardd inherit it
    try:
        fw.start()
        yield fw
    finally:
        fw.close()
        if old is None:
            os.environ.pop(BUS_ENV, None)
        else:
            os.environ[BUS_ENV] = old


def firewalld_demo(console: Any, sb: Sandbox, nwg: Any, row: Callable[..., Any]) -> None:
    """Section 7; ``row(what, expected, happened, ok)`` records a check."""
    console.rule("[bold]7. firewalld (Debian's, on a private bus): zones and reloads")
    state = Path(nwg.options[nwg.options.index("--state-dir") + 1])
    config = Path(nwg.options[nwg.options.index("--config-dir") + 1])
    from nwguard.host.firewalld import BUS_ENV

    env = nwg.env
    with private_firewalld(sb.host_ns) as fw:
        nwg.env = {**env, BUS_ENV: fw.address}
        try:
            _steps(console, sb, nwg, row, fw, state, config)
        finally:
            nwg.env = env


def _steps(
    console: Any, sb: Sandbox, nwg: Any, row: Callable[..., Any], fw: PrivateFirewalld,
    state: Path, config: Path,
) -> None:  # fmt: skip
    c = fw.client
    console.print(f"firewalld {c.version()}, {c.backend()} backend, zones: "
                  f"{', '.join(sorted(c.zones()))}", style="dim")  # fmt: skip
    nwg("net-define", nwg.file(f"{dn.NET_NAME}.xml", dn.network_xml()))
    err = nwg.fails("net-start", dn.NET_NAME)
    left = dn.NET_BRIDGE in sb.links(sb.host_ns)
    row("net-start without firewalld's 'libvirt' zone (nftables backend)", "refused, says why",
        err.split("failed: ", 1)[-1].split(":", 1)[0] + ("; bridge left!" if left else "; nothing left"),
        "has no 'libvirt' zone" in err and not left)  # fmt: skip
    nwg("firewalld-install", "--config-dir", str(fw.etc))
    nwg("net-start", dn.NET_NAME)
    zone = c.zone_of_interface(dn.NET_BRIDGE)
    row(f"net-start: firewalld zone of {dn.NET_BRIDGE}", "libvirt", str(zone), zone == "libvirt")
    g = sb.guest("fwg", None, "52:54:00:00:f1:01", bridge=dn.NET_BRIDGE)
    lease = dn.dhcp_lease(sb, g, "fwg")
    sb.configure(g, lease.ip, lease.prefix, lease.router)
    dns = dn.dns_query(sb, g.ns, f"{dn.NET_PREFIX}.1", f"fwg.{dn.NET_DOMAIN}")
    row("guest in zone libvirt: DHCP lease, DNS for its own name", "both",
        f"lease {lease.ip}, DNS {dns}", dns == lease.ip)  # fmt: skip
    daemon = subprocess.Popen(
        ["ip", "netns", "exec", sb.host_ns, str(Path(sys.executable).with_name("nwguardd")),
         "--config-dir", str(config), "--state-dir", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # its start-up (monitor, reconcile, firewalld watcher)
        for what, act in (("firewall-cmd --reload", lambda: fw.firewall_cmd("--reload")),
                          ("firewalld restart", _restart(fw))):  # fmt: skip
            act()
            took = back_in_zone(fw, dn.NET_BRIDGE, 1.0)
            dns = dn.dns_query(sb, g.ns, f"{dn.NET_PREFIX}.1", f"fwg.{dn.NET_DOMAIN}")
            row(f"{what}: nwguardd puts {dn.NET_BRIDGE} back into zone libvirt",
                "within 1 s, DNS works",
                (f"{took * 1000:.0f} ms" if took is not None else "not back") + f", DNS {dns}",
                took is not None and dns == lease.ip)  # fmt: skip
    finally:
        _stop(daemon)
    nwg("net-destroy", dn.NET_NAME)
    nwg("net-undefine", dn.NET_NAME)
    zone = c.zone_of_interface(dn.NET_BRIDGE)
    row("net-destroy: bridge out of its zone", "no zone", str(zone), zone is None)


def _restart(fw: PrivateFirewalld) -> Callable[[], None]:
    def restart() -> None:
        fw.stop_firewalld()
        fw.start_firewalld()

    return restart
