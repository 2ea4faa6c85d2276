"""``nwguard drops PORT --follow``: the drop log shows exactly the frames a test sends that the
filters drop (each named with its port, direction and rule) and nothing else; the kernel logs
only while someone listens. Two guests on ``clean-traffic`` with IPv6 off (no stray frames)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .lab import Lab
from .nwg import Nwguard, deliveries
from .test_counters import FOREIGN_IP, FOREIGN_MAC, NOBODY_IP, frames, quiet_lab

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")


def read_lines(proc: subprocess.Popen, want: int, timeout: float) -> list[str]:
    """Lines of ``proc``'s stdout until ``want`` came (then half a second more for extras).

    Reads the descriptor itself: a buffered reader would hold lines that select cannot see.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf, lines = b"", []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        had = len(lines)
        lines += [d.decode() for d in done]
        if had < want <= len(lines):
            end = time.monotonic() + 0.5  # anything more would come now
    return lines


def test_drops_follow_shows_exactly_the_dropped_frames_sent(lab: Lab, tmp_path: Path) -> None:
    a, b = quiet_lab(lab)
    nwg = Nwguard(lab, tmp_path)
    for g in (a, b):
        nwg.bind(g, "clean-traffic", IP=g.ip)
    dirs = ["--config-dir", nwg.config, "--state-dir", nwg.state]
    # nobody listens yet: these drops are counted but not logged
    early = frames(a, b)
    assert not deliveries(lab, a, {"mac0": early["mac0"]}, b)["mac0"]
    proc = lab.popen(lab.host_ns, NWGUARD, *dirs, "drops", a.port, "--follow", "--json",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stderr is not None
        assert b"listening" in proc.stderr.readline()
        sent = frames(a, b)
        got = deliveries(lab, a, sent, b)
        assert {n for n, ok in got.items() if ok} == {f"ok{i}" for i in range(5)}  # control
        lines = read_lines(proc, 5, timeout=5.0)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(10)
    assert rc == 0
    logged = [json.loads(ln) for ln in lines]
    assert len(logged) == 5, lines
    assert {x["port"] for x in logged} == {a.port} and {x["direction"] for x in logged} == {"out"}
    forged_ip = [x for x in logged if x["filter"] == "no-ip-spoofing"]
    forged_mac = [x for x in logged if x["filter"] == "no-mac-spoofing"]
    assert len(forged_ip) == 3 and len(forged_mac) == 2
    assert all(f"udp {FOREIGN_IP}:40000 > {NOBODY_IP}:9" in x["summary"] for x in forged_ip)
    assert all(x["summary"].startswith(FOREIGN_MAC) for x in forged_mac)
    assert all(x["rule"] and x["line"] and x["action"] == "drop" for x in logged)
    assert forged_mac[0]["path"] == ["clean-traffic", "no-mac-spoofing"]
