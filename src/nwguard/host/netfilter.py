"""What the port engine asks of the host: does a port exist, and which bridges send bridged IP
through the IP hooks (br_netfilter: conntrack state and rejects for the bridge filters).

Bridged IP pays for the IP hooks and connection tracking only on bridges that hold a port
whose filter needs them: nwguard turns the global ``bridge-nf-call-ip(6)tables`` off and each
such bridge's own ``nf_call_ip(6)tables`` on (the kernel runs the hooks when either is on).
When a port's bridge cannot be seen (``/sys`` of another network namespace), the global
switch is turned on instead: slower, never unfiltered.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterable
from pathlib import Path

SYS_NET = Path("/sys/class/net")
FAMILIES = ("iptables", "ip6tables")


class KernelPortHost:
    """The real host (this network namespace)."""

    def port_exists(self, name: str) -> bool:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

    def ensure_bridge_netfilter(
        self, hooked: Collection[str] = (), released: Collection[str] = ()
    ) -> None:
        """IP hooks on the bridges of the ``hooked`` ports, off on bridges that only held
        ``released`` ones (ports whose filters no longer need them), off globally."""
        on, unseen = self._bridges(hooked)
        _write_all((f"/proc/sys/net/bridge/bridge-nf-call-{f}" for f in FAMILIES),
                   "1" if unseen else "0")  # fmt: skip
        for br in sorted(on):
            _write_all((SYS_NET / br / "bridge" / f"nf_call_{f}" for f in FAMILIES), "1")
        off, _ = self._bridges(released)
        for br in sorted(off - on):
            _write_all((SYS_NET / br / "bridge" / f"nf_call_{f}" for f in FAMILIES), "0")

    def _bridges(self, ports: Collection[str]) -> tuple[set[str], bool]:
        """The bridges of ``ports``, and whether some existing port was not seen in /sys."""
        out, unseen = set(), False
        for port in ports:
            try:
                master = os.readlink(SYS_NET / port / "master")
            except FileNotFoundError:
                if (SYS_NET / port).exists():
                    continue  # on no bridge: no bridge hooks to pay for
                unseen = unseen or self.port_exists(port)
                continue
            except OSError:
                unseen = True
                continue
            br = os.path.basename(master)
            if (SYS_NET / br / "bridge").is_dir():
                out.add(br)
        return out, unseen


def _write_all(paths: Iterable[Path | str], value: str) -> None:
    for p in paths:
        try:
            with open(p, "r+") as f:
                if f.read().strip() != value:
                    f.seek(0)
                    f.write(value + "\n")
        except OSError:
            pass  # no bridge netfilter here: stateful rules will not match, stateless ones do
