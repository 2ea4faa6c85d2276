"""Raw frames in and out of one interface: the socket-level half of the kernel-test lab.

Everything here works on sockets that already live in the right network namespace (the lab
opens them there); nothing here switches namespaces, and nothing imports scapy, so it is
cheap to import. Frames are ``bytes`` from the Ethernet header on.

It is also a script, for poking at a lab by hand from a shell::

    ip netns exec NS python pktsend.py send eth0 < '{"frames": ["ffffffffffff..."]}'
    ip netns exec NS python pktsend.py sniff eth0 --timeout 2 --filter arp

``sniff`` prints ``{"ready": true}`` once its socket is bound, then ``{"frames": [hex...]}``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
_AUX = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
_BUFSIZE = 1 << 18  # veth may hand over GSO frames far above the MTU

Match = Callable[[bytes], bool]


def compile_bpf(expr: str) -> list[tuple[int, int, int, int]]:
    """Compile a tcpdump filter expression for Ethernet into classic BPF instructions."""
    out = subprocess.run(
        ["tcpdump", "-ddd", "-y", "EN10MB", expr],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"bad capture filter {expr!r}: {out.stderr.strip()}")
    lines = out.stdout.split("\n")
    count = int(lines[0])
    insns = [tuple(int(x) for x in line.split()) for line in lines[1 : 1 + count]]
    return [(a, b, c, d) for a, b, c, d in insns]


def attach_bpf(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    """Attach classic BPF to ``sock`` (SO_ATTACH_FILTER): only matching frames are queued."""
    prog = b"".join(struct.pack("HBBI", *insn) for insn in insns)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(insns), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def packet_socket(iface: str, *, bpf: str | None = None, promisc: bool = False) -> socket.socket:
    """An AF_PACKET socket bound to ``iface`` in the caller's namespace, its queue drained.

    Frames queued before the bind or the filter took effect are thrown away, so what it
    reads afterwards arrived after this call returned.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        if bpf is not None:
            attach_bpf(sock, compile_bpf(bpf))
        sock.bind((iface, ETH_P_ALL))
        if promisc:
            mreq = struct.pack("IHH8s", socket.if_nametoindex(iface), PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        drain(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def send_socket(iface: str) -> socket.socket:
    """An AF_PACKET socket for sending whole frames out of ``iface``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((iface, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def drain(sock: socket.socket) -> int:
    """Discard every frame queued on ``sock``; return how many there were."""
    n = 0
    while True:
        try:
            sock.recv(_BUFSIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return n
        n += 1


def send_frames(sock: socket.socket, frames: Iterable[bytes]) -> int:
    """Send each frame as it is; return how many were sent."""
    n = 0
    for frame in frames:
        sock.send(frame)
        n += 1
    return n


def recv_frame(sock: socket.socket, timeout: float) -> tuple[bytes, int] | None:
    """Read one frame and its packet type (``PACKET_*``), or None after ``timeout`` seconds.

    A VLAN tag the driver took off the frame (offload) is put back, so the bytes are the
    frame as it was on the wire.
    """
    ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
    if not ready:
        return None
    data, anc, _flags, addr = sock.recvmsg(_BUFSIZE, socket.CMSG_SPACE(_AUX.size))
    for level, kind, payload in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= _AUX.size:
            status, _len, _snap, _mac, _net, tci, tpid = _AUX.unpack_from(payload)
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    return data, addr[2]


def capture(
    sock: socket.socket,
    timeout: float,
    *,
    match: Match | None = None,
    count: int | None = None,
    outgoing: bool = False,
) -> list[bytes]:
    """Frames read from ``sock`` for ``timeout`` seconds, or until ``count`` of them matched.

    Frames the interface itself sent are left out unless ``outgoing``.
    """
    deadline = time.monotonic() + timeout
    frames: list[bytes] = []
    while count is None or len(frames) < count:
        got = recv_frame(sock, deadline - time.monotonic())
        if got is None:
            break
        data, pkttype = got
        if pkttype == PACKET_OUTGOING and not outgoing:
            continue
        if match is None or match(data):
            frames.append(data)
    return frames


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send", help="send the frames of {'frames': [hex, ...]} on stdin")
    s.add_argument("iface")
    r = sub.add_parser("sniff", help="print the frames seen on IFACE as JSON")
    r.add_argument("iface")
    r.add_argument("--timeout", type=float, default=1.0)
    r.add_argument("--count", type=int, default=None)
    r.add_argument("--filter", default=None, help="tcpdump expression")
    r.add_argument("--outgoing", action="store_true", help="include frames IFACE sent")
    args = ap.parse_args(argv)
    if args.cmd == "send":
        frames = [bytes.fromhex(h) for h in json.load(sys.stdin)["frames"]]
        with send_socket(args.iface) as sock:
            n = send_frames(sock, frames)
        print(json.dumps({"sent": n}))
        return 0
    with packet_socket(args.iface, bpf=args.filter) as sock:
        print(json.dumps({"ready": True}), flush=True)
        got = capture(sock, args.timeout, count=args.count, outgoing=args.outgoing)
    print(json.dumps({"frames": [f.hex() for f in got]}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
