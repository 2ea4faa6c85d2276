"""Receive the packets nftables ``log group N`` sends (nfnetlink_log), on a plain netlink socket.

A small reader of the one message kind needed (the PyPI bindings need libnetfilter_log and a
C build; the protocol is a header and type-length-value attributes). The kernel copies a packet to a
group only while a socket is bound to it: a rule's ``log group`` costs nothing otherwise.
One socket per group (the kernel refuses a second with ``EBUSY``).
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator
from typing import Self

from nwguard.errors import HostError, PermissionDeniedError
from nwguard.records import ValueRecord

NETLINK_NETFILTER = 12
_ULOG = 4  # NFNL_SUBSYS_ULOG
_MSG_PACKET, _MSG_CONFIG = 0, 1
_CMD_BIND, _CMD_UNBIND = 1, 2
_COPY_PACKET = 2
_F_REQUEST, _F_ACK = 1, 4
_NLMSG_ERROR = 2
_A_CMD, _A_MODE = 1, 2
# packet attributes (NFULA_*)
_HDR, _INDEV, _OUTDEV, _PHYSINDEV, _PHYSOUTDEV = 1, 4, 5, 6, 7
_PAYLOAD, _PREFIX, _HWHEADER, _VLAN, _L2HDR = 9, 10, 16, 20, 21
_VLAN_PROTO, _VLAN_TCI = 1, 2


class Logged(ValueRecord):
    """One logged packet: its rule's prefix, the ports it came in and goes out (bridge
    ports, by name; "" when none) and the Ethernet frame as far as it was copied."""

    time: float
    prefix: str
    indev: str
    outdev: str
    frame: bytes


def _attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _attr(kind: int, body: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(body), kind) + body
    return raw + b"\0" * (-len(raw) % 4)


def _ifname(index: bytes | None) -> str:
    if not index:
        return ""
    try:
        return socket.if_indextoname(struct.unpack(">I", index)[0])
    except OSError:
        return ""  # the interface is gone


def _frame(a: dict[int, bytes]) -> bytes:
    l2 = a.get(_L2HDR) or a.get(_HWHEADER) or b""
    payload = a.get(_PAYLOAD, b"")
    vlan = _attrs(a[_VLAN]) if _VLAN in a else {}
    if len(l2) >= 14 and _VLAN_TCI in vlan:  # the tag the receive path took out, put back
        proto = vlan.get(_VLAN_PROTO, b"\x81\x00")
        l2 = l2[:12] + proto + vlan[_VLAN_TCI] + l2[12:]
    return l2 + payload


def parse_packet(msg: bytes) -> Logged | None:
    """A ``NFULNL_MSG_PACKET`` message (after its netlink header) as a record."""
    a = _attrs(msg[4:])  # after struct nfgenmsg
    prefix = a.get(_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
    indev = _ifname(a.get(_PHYSINDEV) or a.get(_INDEV))
    outdev = _ifname(a.get(_PHYSOUTDEV) or a.get(_OUTDEV))
    return Logged(time.time(), prefix, indev, outdev, _frame(a))


class NflogSocket:
    """A socket bound to one nflog group, copying up to ``copy`` bytes of each packet."""

    def __init__(self, group: int, copy: int = 256) -> None:
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except PermissionError:
            raise PermissionDeniedError("reading the drop log needs CAP_NET_ADMIN") from None
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.group, self._seq = group, 0
        try:
            self._config(_attr(_A_CMD, bytes([_CMD_BIND])))
            self._config(_attr(_A_MODE, struct.pack(">IBB", copy, _COPY_PACKET, 0)))
        except BaseException:
            self.sock.close()
            raise

    def _config(self, attrs: bytes) -> None:
        self._seq += 1
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(self.group)) + attrs
        hdr = struct.pack("=IHHII", 16 + len(body), _ULOG << 8 | _MSG_CONFIG,
                          _F_REQUEST | _F_ACK, self._seq, 0)  # fmt: skip
        self.sock.send(hdr + body)
        while True:  # the acknowledgement (a logged packet may come first)
            for kind, payload in self._messages(self.sock.recv(1 << 16)):
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code == errno.EBUSY:
                        raise HostError(f"nflog group {self.group} has a reader already")
                    if code:
                        raise HostError(
                            f"nflog group {self.group}: {errno.errorcode.get(code, code)}"
                        )
                    return

    @staticmethod
    def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            yield kind, data[off + 16 : off + length]
            off += (length + 3) & ~3

    def fileno(self) -> int:
        return self.sock.fileno()

    lost = 0  # receives that overflowed: the kernel dropped log messages

    def read(self) -> list[Logged]:
        """The packets of one receive (blocks until there is one)."""
        out = []
        try:
            data = self.sock.recv(1 << 20)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self.lost += 1
            return []
        for kind, payload in self._messages(data):
            if kind == _ULOG << 8 | _MSG_PACKET and (p := parse_packet(payload)) is not None:
                out.append(p)
        return out

    def close(self) -> None:
        try:
            self._config(_attr(_A_CMD, bytes([_CMD_UNBIND])))
        except (OSError, HostError):
            pass  # closing the socket unbinds too
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
