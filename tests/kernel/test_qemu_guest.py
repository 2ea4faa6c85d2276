"""A real QEMU guest (TCG) behind nwguard, without libvirt: ``nwguard qemu-attach`` makes the
tap from the guest's ``<interface>`` on an nwguard nat network and prints the options QEMU
opens it with. The guest (Debian's cloud kernel, a busybox initramfs built here) gets its
lease from the network's dnsmasq, reaches the outside masqueraded, and its spoofed IP and MAC
are dropped; the same guest without ``<filterref>`` passes all of it (the control)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import guest
from .lab import Lab

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU"),
    pytest.mark.skipif(guest.kernel() is None, reason=f"no guest kernel in {guest.GUEST_DIR}"),
]

SUBNET = "192.0.2"
HOST_IP, OUTSIDE_IP = "198.51.100.1", "198.51.100.2"
FIXED = {"52:54:00:aa:00:07": f"{SUBNET}.7", "52:54:00:aa:00:08": f"{SUBNET}.8"}
SPOOF_MAC = "52:54:00:aa:00:63"
# In the guest: the lease, then one line per check, "<what>=pass" or "<what>=drop". The
# outside has no route back to the guests' subnet: its ping passes only masqueraded.
PROBE = f"""
udhcpc -i eth0 -n -q -f -t 5 -T 1 -s /udhcpc.sh 2>/dev/null || echo lease=none
ping -c1 -W2 {SUBNET}.1 >/dev/null 2>&1 && echo honest=pass || echo honest=drop
ping -c1 -W2 {OUTSIDE_IP} >/dev/null 2>&1 && echo outside=pass || echo outside=drop
ip addr add {SUBNET}.99/24 dev eth0
ping -c1 -W2 -I {SUBNET}.99 {SUBNET}.1 >/dev/null 2>&1 && echo ip=pass || echo ip=drop
ip addr del {SUBNET}.99/24 dev eth0
ip link set eth0 address {SPOOF_MAC}
arping -c1 -w2 -I eth0 {SUBNET}.1 >/dev/null 2>&1 && echo mac=pass || echo mac=drop
"""


def network_xml(bridge: str) -> str:
    hosts = "".join(f"<host mac='{m}' ip='{ip}'/>" for m, ip in FIXED.items())
    return f"""<network><name>qn</name><forward mode='nat'/>
  <bridge name='{bridge}' stp='off' delay='0'/>
  <ip address='{SUBNET}.1' netmask='255.255.255.0'>
    <dhcp><range start='{SUBNET}.100' end='{SUBNET}.199'/>{hosts}</dhcp>
  </ip></network>"""


def interface_xml(mac: str, dev: str, guarded: bool) -> str:
    ref = f"<ip address='{FIXED[mac]}'/><filterref filter='clean-traffic'/>" if guarded else ""
    return f"""<interface type='network'><mac address='{mac}'/><source network='qn'/>
  <target dev='{dev}'/><model type='virtio'/>{ref}</interface>"""


class Host:
    """nwguard's CLI and QEMU in the lab's host namespace, on private directories."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root

    def nwguard(self, *args: str) -> str:
        dirs = ("--config-dir", str(self.root / "etc"), "--state-dir", str(self.root / "run"))
        argv = (sys.executable, "-m", "nwguard", *dirs, *args)
        return self.lab.run(self.lab.host_ns, *argv, timeout=60).stdout

    def boot(self, mac: str, guarded: bool) -> dict[str, str]:
        """Attach the guest's NIC, boot it with the probe, detach; the probe's results."""
        dev = self.lab.devname("qtap")
        nic = self.root / f"{dev}.xml"
        nic.write_text(interface_xml(mac, dev, guarded))
        netdev = self.nwguard("qemu-attach", str(nic)).split()
        initrd, console = self.root / f"{dev}.img", self.root / f"{dev}.log"
        guest.initramfs(initrd, PROBE)
        try:
            self.lab.run(
                self.lab.host_ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "256",
                "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{console}",
                "-kernel", str(guest.kernel()), "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet panic=-1", *netdev[:3], f"{netdev[3]},romfile=",
                timeout=120, input="",
            )  # fmt: skip
        finally:
            self.nwguard("iface-detach", dev)
        lines = console.read_text(errors="replace").split()
        return dict(w.split("=", 1) for w in lines if w.partition("=")[0] in RESULTS)


RESULTS = ("lease", "honest", "outside", "ip", "mac")


@pytest.fixture
def host(lab: Lab, tmp_path: Path) -> Iterator[Host]:
    lab.host(forwarding=True)  # only nwguard's rules decide what is forwarded
    lab.outside("out", ip=OUTSIDE_IP, host_ip=HOST_IP)  # no route back to the guests
    h = Host(lab, tmp_path)
    (tmp_path / "qn.xml").write_text(network_xml(lab.devname("qbr")))
    h.nwguard("net-define", str(tmp_path / "qn.xml"))
    h.nwguard("net-start", "qn")
    try:
        yield h
    finally:
        h.nwguard("net-destroy", "qn")


def test_qemu_guest_gets_a_lease_reaches_out_and_its_spoofing_is_dropped(host: Host) -> None:
    guarded = host.boot("52:54:00:aa:00:07", guarded=True)
    control = host.boot("52:54:00:aa:00:08", guarded=False)
    assert control == {
        "lease": FIXED["52:54:00:aa:00:08"], "honest": "pass", "outside": "pass",
        "ip": "pass", "mac": "pass",
    }  # fmt: skip
    assert guarded == {
        "lease": FIXED["52:54:00:aa:00:07"], "honest": "pass", "outside": "pass",
        "ip": "drop", "mac": "drop",
    }  # fmt: skip


def test_qemu_attach_prints_the_options_that_open_its_tap(host: Host) -> None:
    dev = host.lab.devname("qtap")
    nic = host.root / "nic.xml"
    nic.write_text(interface_xml("52:54:00:aa:00:07", dev, guarded=True))
    out = host.nwguard("qemu-attach", "--id", "n1", str(nic)).split()
    try:
        assert out == [
            "-netdev", f"tap,id=n1,ifname={dev},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:aa:00:07",
        ]  # fmt: skip
        assert dev in host.nwguard("nwfilter-binding-list")
    finally:
        host.nwguard("iface-detach", dev)
    assert dev not in host.lab.run(host.lab.host_ns, "ip", "-o", "link").stdout
