"""``nwguard explain`` as a command, on a binding in force: its verdict for a frame is what
the kernel does with the same frame (a spoofed one and, beside it, the guest's own)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from .lab import Lab
from .nwg import Nwguard, deliveries

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")


def test_explain_command_agrees_with_the_kernel_on_clean_traffic(lab: Lab, tmp_path: Path) -> None:
    lab.bridge()
    a, b = lab.guest("a"), lab.guest("b")
    ng = Nwguard(lab, tmp_path)
    ng.bind(a, "clean-traffic", IP=a.ip)
    frames = {
        "own": Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / UDP(dport=53) / Raw(b"own"),
        "spoofed": Ether(src=a.mac, dst=b.mac) / IP(src="192.0.2.99", dst=b.ip) / UDP(dport=53),
    }
    kernel = deliveries(lab, a, frames, b)
    assert kernel == {"own": True, "spoofed": False}
    dirs = ["--config-dir", ng.config, "--state-dir", ng.state]
    answers = {}
    for name, f in frames.items():
        out = lab.run(lab.host_ns, NWGUARD, *dirs, "explain", a.port, "--frame", bytes(f).hex(),
                      "--out", "--json", check=False)  # fmt: skip
        assert out.returncode == (0 if kernel[name] else 2), out.stderr
        answers[name] = json.loads(out.stdout)
    assert answers["own"]["verdict"] == "accept"
    spoofed = answers["spoofed"]
    decided = spoofed["rules"][spoofed["decided_by"]]["origin"]
    assert spoofed["verdict"] == "drop"
    assert (decided["filter"], decided["index"]) == ("no-ip-spoofing", 3)
    assert decided["file"] == f"{ng.config}/nwfilter/no-ip-spoofing.xml" and decided["line"]
    text = Path(decided["file"]).read_text().splitlines()[decided["line"] - 1]
    assert "<rule" in text and "drop" in text
