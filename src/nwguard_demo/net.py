"""The demo's virtual-network helpers: the network's XML, a small DHCP client, a DNS query.

Guests in the demo have no DHCP client installed and need none: :func:`dhcp_lease` speaks
DHCP itself (DISCOVER, OFFER, REQUEST, ACK, frames built with scapy) on the guest's ``eth0``
against the network's real dnsmasq, then configures the address and default route it was
given. :func:`dns_query` asks a DNS server for a name's A record from inside a namespace.
Every wait has a timeout.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nwguard_demo.sandbox import Guest, Sandbox, rx_wait

NET_NAME = "demo-nat"
NET_BRIDGE = "virbr-demo"
NET_DOMAIN = "demo.test"
NET_PREFIX = "10.123.0"  # the network's subnet, only inside the sandbox's host namespace
OUT_HOST_IP, OUT_IP = "198.51.100.1", "198.51.100.2"  # the routed "outside" link (TEST-NET-2)


def network_xml() -> str:
    """libvirt's XML of the demo's NAT network (STP off: its ports forward at once)."""
    return f"""\
<network>
  <name>{NET_NAME}</name>
  <forward mode='nat'/>
  <bridge name='{NET_BRIDGE}' stp='off' delay='0'/>
  <domain name='{NET_DOMAIN}'/>
  <ip address='{NET_PREFIX}.1' prefix='24'>
    <dhcp>
      <range start='{NET_PREFIX}.100' end='{NET_PREFIX}.199'/>
    </dhcp>
  </ip>
</network>
"""


class NetDemoError(RuntimeError):
    """A network step of the demo could not be carried out."""


@dataclass(frozen=True, slots=True)
class Lease:
    """What a DHCPACK gave a guest."""

    ip: str
    prefix: int
    router: str | None
    dns: str | None
    server: str
    seconds: int | None
    elapsed: float


# ----------------------------------------------------------------------------- DHCP


def _layers() -> Any:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return Ether, IP, UDP, BOOTP, DHCP


def _dhcp_frame(g: Guest, xid: int, options: list[Any]) -> bytes:
    Ether, IP, UDP, BOOTP, DHCP = _layers()
    chaddr = bytes.fromhex(g.mac.replace(":", ""))
    return bytes(
        Ether(src=g.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=chaddr, xid=xid, flags=0x8000)
        / DHCP(options=[*options, "end"])
    )


def _dhcp_reply(raw: bytes, xid: int, kind: int) -> tuple[Any, dict[str, tuple[Any, ...]]] | None:
    """``raw`` parsed if it is a DHCP message of type ``kind`` for transaction ``xid``."""
    Ether, _, _, BOOTP, DHCP = _layers()
    try:
        pkt = Ether(raw)
    except Exception:  # noqa: BLE001 - anything scapy cannot parse is not our reply
        return None
    if BOOTP not in pkt or DHCP not in pkt or pkt[BOOTP].xid != xid or pkt[BOOTP].op != 2:
        return None
    opts = {o[0]: tuple(o[1:]) for o in pkt[DHCP].options if isinstance(o, tuple)}
    return (pkt, opts) if opts.get("message-type", (None,))[0] == kind else None


def _ask(
    sb: Sandbox, g: Guest, xid: int, options: list[Any], kind: int, deadline: float
) -> tuple[Any, dict[str, tuple[Any, ...]]]:
    """Broadcast a DHCP message, resent every second, until a reply of type ``kind`` comes."""
    frame = _dhcp_frame(g, xid, options)
    while time.monotonic() < deadline:
        with sb.sniffer(g) as rx:
            sb.send(g, frame)
            end = min(deadline, time.monotonic() + 1.0)
            raw = rx_wait(
                rx, lambda d: _dhcp_reply(d, xid, kind) is not None, end - time.monotonic()
            )
        if raw is not None:
            got = _dhcp_reply(raw, xid, kind)
            assert got is not None
            return got
    what = {2: "DHCPOFFER", 5: "DHCPACK"}[kind]
    raise NetDemoError(f"no {what} for {g.name} from dnsmasq")


def dhcp_lease(sb: Sandbox, g: Guest, hostname: str, timeout: float = 8.0) -> Lease:
    """A real DHCP exchange for ``g`` (announcing ``hostname``); returns what was leased.

    Raises :class:`NetDemoError` when dnsmasq does not answer within ``timeout``. The caller
    configures the address (:meth:`Sandbox.configure`).
    """
    _, _, _, BOOTP, _ = _layers()
    started = time.monotonic()
    deadline = started + timeout
    xid = int.from_bytes(os.urandom(4), "big")
    name = ("hostname", hostname.encode())
    offer, oopts = _ask(sb, g, xid, [("message-type", "discover"), name], 2, deadline)
    ip, server = offer[BOOTP].yiaddr, oopts["server_id"][0]
    request = [("message-type", "request"), ("requested_addr", ip), ("server_id", server), name]
    ack, aopts = _ask(sb, g, xid, request, 5, deadline)
    if ack[BOOTP].yiaddr != ip:
        raise NetDemoError(f"dnsmasq acknowledged {ack[BOOTP].yiaddr}, not the offered {ip}")
    mask = aopts.get("subnet_mask", ("255.255.255.255",))[0]
    return Lease(
        ip=ip,
        prefix=sum(int(o).bit_count() for o in mask.split(".")),
        router=aopts.get("router", (None,))[0],
        dns=aopts.get("name_server", (None,))[0],
        server=server,
        seconds=aopts.get("lease_time", (None,))[0],
        elapsed=time.monotonic() - started,
    )


# ----------------------------------------------------------------------------- DNS


def dns_query(sb: Sandbox, ns: str, server: str, name: str, timeout: float = 1.5) -> str | None:
    """The first A record for ``name`` that ``server`` gives, asked from inside ``ns``."""
    from scapy.layers.dns import DNS, DNSQR

    qid = int.from_bytes(os.urandom(2), "big")
    with sb.socket(ns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name))), (server, 53))
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                reply = DNS(sock.recv(4096))
            except (TimeoutError, OSError):
                return None
            if reply.id == qid:
                break
    for i in range(reply.ancount or 0):
        if reply.an[i].type == 1:
            return str(reply.an[i].rdata)
    return None


# ----------------------------------------------------------------------------- leftovers


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text.encode() in cmd and state != "Z":
            pids.append(int(entry.name))
    return pids
