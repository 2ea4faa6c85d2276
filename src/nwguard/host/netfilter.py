"""What the port engine asks of the host: does a port exist, and bridged IP through the IP hooks."""

from __future__ import annotations

import socket
from pathlib import Path


class KernelPortHost:
    """The real host (this network namespace)."""

    def port_exists(self, name: str) -> bool:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

    def ensure_bridge_netfilter(self) -> None:
        """Bridged IP must pass the IP hooks for connection state (per network namespace)."""
        for fam in ("iptables", "ip6tables"):
            p = Path(f"/proc/sys/net/bridge/bridge-nf-call-{fam}")
            try:
                if p.read_text().strip() != "1":
                    p.write_text("1\n")
            except OSError:
                pass  # no bridge netfilter here: stateful rules will not match, stateless ones do


def port_exists(name: str) -> bool:
    return KernelPortHost().port_exists(name)


def ensure_bridge_netfilter() -> None:
    KernelPortHost().ensure_bridge_netfilter()
