"""``nwguard top`` in a real terminal: tmux runs it in the lab's host namespace; the test reads
the screen back, sees the bound ports and the rule that dropped the frames it sent, and quits
it with ``q`` and with Ctrl-C (the command must exit 0 both ways and leave the full-screen
view)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from .lab import Lab
from .nwg import Nwguard
from .test_counters import quiet_lab

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")
FOREIGN_MAC = "52:54:00:de:ad:08"
# Runs a command on the pane's terminal, ignoring Ctrl-C itself (the command gets it), and
# writes the command's exit status to a file (argv: the file, then the command).
WRAPPER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
signal.signal(signal.SIGINT, signal.SIG_IGN)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
open(sys.argv[1] + ".tmp", "w").write(str(code))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
"""


class Tmux:
    """A private tmux server (its own socket) whose one session runs a command."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", name]

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            [*self.base, *args], check=False, capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {out.stderr}")
        return out.stdout

    def start(self, argv: list[str], status: Path) -> None:
        """Run ``argv`` in the pane through :data:`WRAPPER`, which writes its exit status
        (tmux's own ``pane_dead_status`` is sometimes never filled in)."""
        self.status = status
        wrapped = [sys.executable, "-c", WRAPPER, str(status), *argv]
        self("new-session", "-d", "-s", "t", "-x", "150", "-y", "45", *wrapped)
        self("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "t")

    def exit_status(self) -> str | None:
        """How the command ended ("0", "-2" for a signal ...), None while it runs."""
        return self.status.read_text() if self.status.exists() else None

    def wait(self, check, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if check():
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], check=False, capture_output=True, timeout=10)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux(f"nwgt-{os.getpid()}-top")
    try:
        yield t
    finally:
        t.close()


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_top_shows_ports_and_the_dropping_rule_and_quits(
    lab: Lab, tmp_path: Path, tmux: Tmux, quit_key: str
) -> None:
    a, b = quiet_lab(lab)  # IPv6 off: no neighbour discovery frame to drop besides ours
    nwg = Nwguard(lab, tmp_path)
    for g in (a, b):
        nwg.bind(g, "clean-traffic", IP=g.ip)
    forged = [
        Ether(src=FOREIGN_MAC, dst=b.mac) / IP(src=a.ip, dst=b.ip) / UDP() / Raw(b"top%d" % i)
        for i in range(7)
    ]
    lab.send(a, *forged)
    dirs = ["--config-dir", nwg.config, "--state-dir", nwg.state]
    tmux.start(["ip", "netns", "exec", lab.host_ns, NWGUARD, *dirs, "top"], tmp_path / "status")

    def shows_drops() -> bool:
        screen = tmux.screen()
        rows = [ln for ln in screen.splitlines() if "no-mac-spoofing rule[" in ln]
        return a.port in screen and b.port in screen and any(" 7 " in r for r in rows)

    assert tmux.wait(shows_drops), tmux.screen()
    screen = tmux.screen()
    assert "nwguard top" in screen and "rules that drop most" in screen
    (a_row,) = [ln for ln in screen.splitlines() if a.port in ln and "rule[" not in ln]
    cells = [c.strip() for c in a_row.strip("│ ").split("│")]
    assert cells[0] == a.port and cells[-1] == "7"  # dropped in all: the 7 frames
    assert tmux.exit_status() is None
    tmux("send-keys", "-t", "t", quit_key)
    assert tmux.wait(lambda: tmux.exit_status() is not None), tmux.screen()
    assert tmux.exit_status() == "0"
    assert "nwguard top" not in tmux.screen()  # the full screen view is gone
