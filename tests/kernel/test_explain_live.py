"""``nwguard explain PORT --live``: for a sample of frames (accepted, dropped at the Ethernet
layer by two different rules), the kernel's verdict and deciding rule, read from nftables
tracing of the frame the test then sends, agree with explain's; the trace table is gone after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from .lab import Lab
from .nwg import Nwguard
from .test_counters import FOREIGN_IP, FOREIGN_MAC, NOBODY_IP, quiet_lab

pytestmark = pytest.mark.kernel

NWGUARD = str(Path(sys.executable).parent / "nwguard")


def test_live_agrees_with_the_kernel_on_a_sample(lab: Lab, tmp_path: Path) -> None:
    a, b = quiet_lab(lab)
    nwg = Nwguard(lab, tmp_path)
    for g in (a, b):
        nwg.bind(g, "clean-traffic", IP=g.ip)
    udp = UDP(sport=40000, dport=9) / Raw(b"NWG-LIVE")
    sample = {
        "valid": (Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=NOBODY_IP) / udp, "accept", None),
        "forged ip": (Ether(src=a.mac, dst=b.mac) / IP(src=FOREIGN_IP, dst=NOBODY_IP) / udp,
                      "drop", "no-ip-spoofing"),
        "forged mac": (Ether(src=FOREIGN_MAC, dst=b.mac) / IP(src=a.ip, dst=NOBODY_IP) / udp,
                       "drop", "no-mac-spoofing"),
        "arp spoof": (Ether(src=a.mac, dst=b.mac) / ARP(op=2, hwsrc=a.mac, psrc=FOREIGN_IP,
                                                         hwdst=b.mac, pdst=b.ip),
                      "drop", "no-arp-ip-spoofing"),
    }  # fmt: skip
    dirs = ["--config-dir", nwg.config, "--state-dir", nwg.state]
    for name, (frame, verdict, filt) in sample.items():
        data = bytes(frame)
        proc = lab.popen(lab.host_ns, NWGUARD, *dirs, "explain", a.port, "--out", "--frame",
                         data.hex(), "--live", "--timeout", "10", "--json",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            assert proc.stderr is not None
            assert b"live: waiting" in proc.stderr.readline(), name
            lab.send(a, data)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == (0 if verdict == "accept" else 2), (name, err)
        doc = json.loads(out)
        live = doc["live"]
        assert live["agrees"] and live["kernel"]["verdict"] == verdict, (name, live)
        if filt is not None:
            rule = doc["rules"][doc["decided_by"]]
            assert rule["origin"]["filter"] == filt, name
            assert (live["kernel"]["chain"], live["kernel"]["position"]) == (
                rule["chain"], rule["position"]), name  # fmt: skip
    listed = lab.run(lab.host_ns, "nft", "list", "tables").stdout
    assert "nwguard_trace" not in listed and "bridge nwguard" in listed
