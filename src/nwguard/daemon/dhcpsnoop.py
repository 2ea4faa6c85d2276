"""What a captured frame tells IP learning (pure: bytes in, evidence out).

Frames are Ethernet from the destination MAC on (one 802.1Q tag is skipped). ``to_guest``
says which way the frame went on the port: True for frames the bridge sent to the guest
(``PACKET_OUTGOING`` on a tap/veth port), False for frames the guest sent.

* :func:`any_evidence` (``CTRL_IP_LEARNING=any``, spec §4.2): the address to lock on, or None.
* :func:`dhcp_event` (``dhcp``, spec §4.3): a lease to add (DHCPACK to the guest), or an
  address to drop (DHCPRELEASE / DHCPDECLINE from the guest), or None.

What the learner tells the daemon is a :data:`LearningEvent`: :class:`Learned` (``any``),
:class:`Acked`, :class:`Released` and :class:`Expired` (``dhcp``); an :class:`Ignored` ACK is
only logged.

One deliberate difference from libvirt: for an ARP *request* from the guest libvirt takes the
*target* address (its code reads ``ar_tip``; right for a gratuitous ARP, where target equals
sender). A guest with a static address whose first frame asks for a neighbour's MAC would then
be locked onto the neighbour's address, and could spoof it. nwguard takes the request's sender
address, which the guest claims as its own, and skips requests from 0.0.0.0 (ARP probes: the
address is not the guest's yet; its announcement follows).

>>> mac = "52:54:00:00:00:01"
>>> f = ether("ff:ff:ff:ff:ff:ff", mac, 0x0806) + arp(1, mac, "192.0.2.7", "00:00:00:00:00:00", "192.0.2.1")
>>> any_evidence(f, False, mac)
'192.0.2.7'
"""

from __future__ import annotations

import ipaddress
import struct
import time
from dataclasses import dataclass
from typing import Any, ClassVar

ETH_IPV4, ETH_ARP, ETH_VLAN = 0x0800, 0x0806, 0x8100
BROADCAST = "ff:ff:ff:ff:ff:ff"
DHCP_COOKIE = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
INFINITE = 0xFFFFFFFF


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip(b: bytes) -> str:
    return str(ipaddress.IPv4Address(b))


def usable(addr: str) -> bool:
    """libvirt's test for a learnable address: not 0.0.0.0, below 224.0.0.0."""
    a = ipaddress.IPv4Address(addr)
    return 0 < int(a) < 0xE0000000


@dataclass(frozen=True, slots=True)
class Frame:
    dst: str
    src: str
    ethertype: int
    payload: bytes


def parse_frame(data: bytes) -> Frame | None:
    if len(data) < 14:
        return None
    etype = struct.unpack_from("!H", data, 12)[0]
    off = 14
    if etype == ETH_VLAN and len(data) >= 18:
        etype = struct.unpack_from("!H", data, 16)[0]
        off = 18
    return Frame(_mac(data[0:6]), _mac(data[6:12]), etype, data[off:])


@dataclass(frozen=True, slots=True)
class IPv4:
    src: str
    dst: str
    proto: int
    payload: bytes


def parse_ipv4(p: bytes) -> IPv4 | None:
    if len(p) < 20 or p[0] >> 4 != 4:
        return None
    ihl = (p[0] & 0x0F) * 4
    total = struct.unpack_from("!H", p, 2)[0]
    frag = struct.unpack_from("!H", p, 6)[0] & 0x1FFF
    if ihl < 20 or len(p) < ihl:
        return None
    end = min(len(p), total) if total >= ihl else len(p)
    payload = p[ihl:end] if frag == 0 else b""
    return IPv4(_ip(p[12:16]), _ip(p[16:20]), p[9], payload)


@dataclass(frozen=True, slots=True)
class Dhcp:
    op: int  # 1 BOOTREQUEST, 2 BOOTREPLY
    chaddr: str
    ciaddr: str
    yiaddr: str
    msgtype: int | None
    lease_time: int | None
    requested: str | None
    server_id: str | None


def parse_dhcp(ip: IPv4, sport: int, dport: int) -> Dhcp | None:
    """The DHCP message in an IPv4 packet from ``sport`` to ``dport``, or None."""
    if ip.proto != 17 or len(ip.payload) < 8:
        return None
    us, ud = struct.unpack_from("!HH", ip.payload, 0)
    if (us, ud) != (sport, dport):
        return None
    m = ip.payload[8:]
    if len(m) < 240 or m[236:240] != DHCP_COOKIE or m[1] != 1 or m[2] != 6:
        return None
    opts = _options(m[240:])
    msgtype = opts.get(53, b"")[:1]
    lease = opts.get(51)
    req, sid = opts.get(50), opts.get(54)
    return Dhcp(
        op=m[0], chaddr=_mac(m[28:34]), ciaddr=_ip(m[12:16]), yiaddr=_ip(m[16:20]),
        msgtype=msgtype[0] if msgtype else None,
        lease_time=struct.unpack("!I", lease)[0] if lease and len(lease) == 4 else None,
        requested=_ip(req) if req and len(req) == 4 else None,
        server_id=_ip(sid) if sid and len(sid) == 4 else None,
    )  # fmt: skip


def _options(b: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(b):
        code = b[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(b):
            break
        n = b[i + 1]
        out.setdefault(code, b[i + 2 : i + 2 + n])
        i += 2 + n
    return out


# ----------------------------------------------------------------------------- evidence


def any_evidence(data: bytes, to_guest: bool, mac: str) -> str | None:
    """The guest's address as libvirt's learner (``any``) would lock on it, or None."""
    f = parse_frame(data)
    if f is None:
        return None
    if to_guest:
        if f.ethertype != ETH_IPV4 or f.dst not in (mac, BROADCAST):
            return None
        ip = parse_ipv4(f.payload)
        d = parse_dhcp(ip, 67, 68) if ip else None
        if d is None or d.op != 2 or d.chaddr != mac or d.msgtype not in (OFFER, ACK):
            return None
        return d.yiaddr if usable(d.yiaddr) else None
    if f.src != mac:
        return None
    if f.ethertype == ETH_IPV4:
        ip = parse_ipv4(f.payload)
        return ip.src if ip is not None and usable(ip.src) else None
    if f.ethertype == ETH_ARP:
        return _arp_address(f.payload, mac)
    return None


def _arp_address(p: bytes, mac: str) -> str | None:
    if len(p) < 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", p, 0)
    if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4) or _mac(p[8:14]) != mac:
        return None
    sender = _ip(p[14:18])
    if op in (1, 2) and usable(sender):
        return sender
    return None


# ----------------------------------------------------------------------------- events


class SnoopEvent:
    """An event of IP learning; ``kind`` names it in logs and in its JSON form."""

    __slots__ = ()
    kind: ClassVar[str]
    __match_args__: ClassVar[tuple[str, ...]]  # the fields (made by @dataclass)

    def to_json(self) -> dict[str, Any]:
        values = ((n, getattr(self, n)) for n in self.__match_args__)
        return {"kind": self.kind, **{n: list(v) if isinstance(v, tuple) else v for n, v in values}}

    def describe(self) -> str:
        return getattr(self, "ip", None) or ", ".join(getattr(self, "ips", ()))


@dataclass(frozen=True, slots=True)
class Learned(SnoopEvent):
    """``any``: the address the port is locked to."""

    kind: ClassVar[str] = "learn"
    ip: str


@dataclass(frozen=True, slots=True)
class Acked(SnoopEvent):
    """``dhcp``: a DHCPACK to the guest, a new lease or the renewal of one."""

    kind: ClassVar[str] = "ack"
    ip: str
    server: str | None = None
    expiry: float | None = None  # epoch seconds; None: an infinite lease


@dataclass(frozen=True, slots=True)
class Released(SnoopEvent):
    """``dhcp``: the guest gave the address up (DHCPRELEASE) or refused it (DHCPDECLINE)."""

    kind: ClassVar[str] = "release"
    ip: str


@dataclass(frozen=True, slots=True)
class Expired(SnoopEvent):
    """``dhcp``: these leases ran out."""

    kind: ClassVar[str] = "expire"
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ignored(SnoopEvent):
    """A DHCPACK that does not count (from a server not in ``DHCPSERVER``): logged only."""

    kind: ClassVar[str] = "ignored"
    ip: str
    server: str | None
    reason: str


LearningEvent = Learned | Acked | Released | Expired
"""What the learner reports for a port (see :class:`nwguard.daemon.learning.Learner`)."""

EVENTS: dict[str, type[SnoopEvent]] = {
    c.kind: c for c in (Learned, Acked, Released, Expired, Ignored)
}


def event_from_json(d: dict[str, Any]) -> SnoopEvent:
    """The event of a :meth:`SnoopEvent.to_json` form (KeyError/TypeError if it is not one).

    >>> event_from_json(Expired(("192.0.2.5",)).to_json())
    Expired(ips=('192.0.2.5',))
    """
    cls: Any = EVENTS[d["kind"]]
    event: SnoopEvent = cls(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "kind"}
    )
    return event


def dhcp_event(data: bytes, to_guest: bool, mac: str, servers: tuple[str, ...] = (),
               now: float | None = None) -> Acked | Released | Ignored | None:  # fmt: skip
    """What a frame means for DHCP snooping (spec §4.3), or None if nothing."""
    f = parse_frame(data)
    if f is None or f.ethertype != ETH_IPV4:
        return None
    ip = parse_ipv4(f.payload)
    if ip is None:
        return None
    if to_guest:
        d = parse_dhcp(ip, 67, 68)
        if d is None or d.op != 2 or d.chaddr != mac or d.msgtype != ACK or not usable(d.yiaddr):
            return None
        if servers and ip.src not in servers:
            return Ignored(d.yiaddr, ip.src, f"server {ip.src} is not in DHCPSERVER")
        now = time.time() if now is None else now
        lease = d.lease_time
        expiry = None if lease is None or lease == INFINITE else now + lease
        return Acked(d.yiaddr, ip.src, expiry)
    if f.src != mac:
        return None
    d = parse_dhcp(ip, 68, 67)
    if d is None or d.op != 1 or d.chaddr != mac:
        return None
    if d.msgtype == RELEASE and usable(d.ciaddr):
        return Released(d.ciaddr)
    if d.msgtype == DECLINE and d.requested and usable(d.requested):
        return Released(d.requested)
    return None


# ----------------------------------------------------------------------------- building
# (frames for tests and doctests; the daemon only reads)


def ether(dst: str, src: str, ethertype: int) -> bytes:
    return (
        bytes.fromhex(dst.replace(":", ""))
        + bytes.fromhex(src.replace(":", ""))
        + struct.pack("!H", ethertype)
    )


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return (struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, op) + bytes.fromhex(sha.replace(":", ""))
            + ipaddress.IPv4Address(spa).packed + bytes.fromhex(tha.replace(":", ""))
            + ipaddress.IPv4Address(tpa).packed)  # fmt: skip


# ----------------------------------------------------------------------------- capture filters


def _asm(prog: list[tuple[Any, ...]]) -> list[tuple[int, int, int, int]]:
    """Assemble classic BPF with labels: ``(op, k, jt_label, jf_label)`` / ``("label", name)``."""
    labels, out, pc = {}, [], 0
    for ins in prog:
        if ins[0] == "label":
            labels[ins[1]] = pc
        else:
            pc += 1
    pc = 0
    for ins in prog:
        if ins[0] == "label":
            continue
        op, k, *jumps = ins
        jt = labels[jumps[0]] - pc - 1 if jumps and jumps[0] is not None else 0
        jf = labels[jumps[1]] - pc - 1 if len(jumps) > 1 and jumps[1] is not None else 0
        out.append((op, jt, jf, k))
        pc += 1
    return out


LDH_ABS, LDB_ABS, LDH_IND, LDXB_MSH = 0x28, 0x30, 0x48, 0xB1
JEQ, JSET, RET = 0x15, 0x45, 0x06
SNAP = 0x40000

BPF_ANY = _asm([
    (LDH_ABS, 12),
    (JEQ, ETH_IPV4, "yes", None),
    (JEQ, ETH_ARP, "yes", "no"),
    ("label", "yes"), (RET, SNAP),
    ("label", "no"), (RET, 0),
])  # fmt: skip
"""IPv4 and ARP frames."""

BPF_DHCP = _asm([
    (LDH_ABS, 12),
    (JEQ, ETH_IPV4, None, "no"),
    (LDB_ABS, 23),
    (JEQ, 17, None, "no"),
    (LDH_ABS, 20),
    (JSET, 0x1FFF, "no", None),
    (LDXB_MSH, 14),
    (LDH_IND, 14),
    (JEQ, 67, "s67", None),
    (JEQ, 68, "s68", "no"),
    ("label", "s67"), (LDH_IND, 16), (JEQ, 68, "yes", "no"),
    ("label", "s68"), (LDH_IND, 16), (JEQ, 67, "yes", "no"),
    ("label", "yes"), (RET, SNAP),
    ("label", "no"), (RET, 0),
])  # fmt: skip
"""IPv4 UDP between ports 67 and 68 (either way), first fragments only."""
