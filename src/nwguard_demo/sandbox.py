"""A throw-away sandbox of network namespaces for the demo: a host with a bridge, guests.

Everything lives in namespaces named ``nwgdemo-<pid>-<name>``; the caller's own network is
never touched. :class:`Sandbox` is a context manager whose ``close`` kills what is left in
its namespaces and deletes them; :func:`sweep` removes the namespaces of demo runs whose
process is dead (a run killed with SIGKILL cannot clean up after itself).

Traffic is real: sockets are opened inside a namespace by moving the calling thread into it
for the ``socket()`` call only (a socket stays in the namespace it was made in), and frames
are sent and captured on ``AF_PACKET`` sockets.

>>> with Sandbox() as sb:                                   # doctest: +SKIP
...     sb.host(bridge="br0")
...     a = sb.guest("a", "192.0.2.11", "52:54:00:00:00:0a")
...     b = sb.guest("b", "192.0.2.12", "52:54:00:00:00:0b")
...     sb.ping(a, b.ip)
True
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import select
import signal
import socket
import socket as _socket  # the class has a method named socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

PREFIX = "nwgdemo-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(RuntimeError):
    """Building or using the sandbox failed (the message says which command and why)."""


@dataclass(frozen=True, slots=True)
class Guest:
    """A guest namespace: ``eth0`` inside, bridged into the host by the veth end ``port``."""

    name: str
    ns: str
    port: str
    mac: str
    ip: str
    iface: str = "eth0"


# ----------------------------------------------------------------------------- namespaces


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def netns(ns: str) -> Iterator[None]:
    """Run the body with the calling thread in network namespace ``ns``; always move back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run(
    argv: list[str], *, check: bool = True, timeout: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, output captured; with ``check`` a failure raises SandboxError."""
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and out.returncode != 0:
        msg = (out.stderr or out.stdout).strip()
        raise SandboxError(f"{' '.join(argv)} exited {out.returncode}: {msg}")
    return out


def _kill_pids_in(ns: str) -> None:
    """SIGKILL what still runs in ``ns`` (processes this sandbox started there)."""
    out = run(["ip", "netns", "pids", ns], check=False)
    for word in out.stdout.split():
        pid = int(word)
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Delete the namespaces of earlier demo runs whose process is gone; return their names."""
    removed = []
    names = sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []
    for ns in names:
        if not ns.startswith(PREFIX):
            continue
        head = ns[len(PREFIX) :].split("-", 1)[0]
        if not head.isdigit() or int(head) == os.getpid() or _pid_alive(int(head)):
            continue
        _kill_pids_in(ns)
        if run(["ip", "netns", "del", ns], check=False).returncode == 0:
            removed.append(ns)
    return removed


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt in the body (as Ctrl-C does), so ``finally``
    blocks run and the sandbox is removed however the run is stopped."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def orphans_reaped(timeout: float = 1.0) -> Iterator[None]:
    """Make this process the reaper of the daemons its children start, and reap them at exit.

    A daemon such as a network's dnsmasq forks away from the command that started it; once
    stopped it stays a zombie until its new parent collects it. As a child subreaper the demo
    is that parent, so nothing it started lingers, not even as a zombie, when it ends.
    """
    PR_SET_CHILD_SUBREAPER = 36
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


# ----------------------------------------------------------------------------- the sandbox


class Sandbox:
    """A host namespace with a bridge and guest namespaces plugged into it, removed on close."""

    def __init__(self) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.namespaces: list[str] = []
        self.host_ns = ""
        self.bridge = ""
        self.guests: dict[str, Guest] = {}
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill what runs in the sandbox's namespaces and delete them (their devices go too).

        Ctrl-C, SIGTERM and SIGHUP are ignored meanwhile, so a second one cannot leave half
        of it behind.
        """
        if self._closed:
            return
        self._closed = True
        stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in stoppers}
        try:
            for ns in reversed(self.namespaces):
                _kill_pids_in(ns)
                run(["ip", "netns", "del", ns], check=False)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def namespace(self, name: str) -> str:
        ns = f"{self.tag}-{name}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        self.ip(ns, "link", "set", "lo", "up")
        self.sysctl(
            ns, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}
        )
        return ns

    def host(self, bridge: str = "br0") -> str:
        """The host namespace with a bridge (no STP, no forwarding delay) that is up."""
        self.host_ns = self.namespace("host")
        self.ip(
            self.host_ns,
            "link",
            "add",
            bridge,
            "up",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        )
        self.bridge = bridge
        return self.host_ns

    def guest(
        self, name: str, ip: str | None, mac: str, prefix: int = 24, *, bridge: str | None = None
    ) -> Guest:
        """A guest namespace whose ``eth0`` is bridged into the host as port ``vnet-<name>``.

        ``bridge`` is the sandbox's own bridge unless given (e.g. a bridge a virtual network
        made); with ``ip=None`` eth0 is up without an address (its guest will use DHCP).
        """
        ns = self.namespace(name)
        port = f"vnet-{name}"
        self.ip(
            self.host_ns,
            "link",
            "add",
            port,
            "address",
            "fe" + mac[2:],
            "master",
            bridge or self.bridge,
            "up",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            mac,
            "netns",
            ns,
        )
        if ip is not None:
            self.ip(ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        self.ip(ns, "link", "set", "eth0", "up")
        g = Guest(name, ns, port, mac, ip or "")
        self.guests[name] = g
        return g

    def outside(self, name: str, ip: str, host_ip: str, prefix: int = 24) -> Guest:
        """A namespace joined to the host namespace by a routed (not bridged) veth.

        Its ``eth0`` has ``ip`` and a default route via the host side ``ext-<name>``, which
        has ``host_ip``: an "outside" LAN that reaches whatever the host namespace routes.
        """
        ns = self.namespace(name)
        port = f"ext-{name}"[:15]
        self.ip(self.host_ns, "link", "add", port, "up", "type", "veth", "peer", "name", "eth0",
                "netns", ns)  # fmt: skip
        self.ip(self.host_ns, "addr", "add", f"{host_ip}/{prefix}", "dev", port)
        self.ip(ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        self.ip(ns, "link", "set", "eth0", "up")
        self.ip(ns, "route", "add", "default", "via", host_ip)
        return Guest(name, ns, port, "", ip)

    def configure(self, g: Guest, ip: str, prefix: int, gateway: str | None) -> Guest:
        """Give ``g``'s eth0 an address (and a default route): e.g. what DHCP handed out."""
        self.ip(g.ns, "addr", "add", f"{ip}/{prefix}", "dev", g.iface)
        if gateway:
            self.ip(g.ns, "route", "add", "default", "via", gateway)
        g = replace(g, ip=ip)
        self.guests[g.name] = g
        return g

    def read_sysctl(self, ns: str, key: str) -> str:
        """A sysctl's value inside ``ns`` (``key`` dotted, e.g. ``net.ipv4.ip_forward``)."""
        with netns(ns):
            return Path("/proc/sys", *key.split(".")).read_text().strip()

    def links(self, ns: str) -> list[str]:
        """The names of the network devices in ``ns``."""
        out = self.exec(ns, ["ip", "-o", "link", "show"]).stdout
        return [
            line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line
        ]

    def ip(self, ns: str, *argv: str) -> None:
        run(["ip", "-n", ns, *argv])

    def sysctl(self, ns: str, values: dict[str, int]) -> None:
        """Best-effort sysctls inside ``ns`` (e.g. no IPv6 chatter; absent without IPv6)."""
        with netns(ns):
            for key, value in values.items():
                with contextlib.suppress(OSError):
                    Path("/proc/sys", *key.split(".")).write_text(f"{value}\n")

    def exec(self, ns: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside a namespace (``ip netns exec``)."""
        return run(["ip", "netns", "exec", ns, *argv], **kw)

    # ---- traffic ----

    def socket(self, ns: str, family: int, type: int, proto: int = 0) -> socket.socket:
        with netns(ns):
            return socket.socket(family, type, proto)

    def probe(
        self,
        sender: Guest,
        frame: bytes,
        receiver: Guest,
        match: Callable[[bytes], bool],
        timeout: float = 0.8,
    ) -> bool:
        """Send ``frame`` out of the sender's eth0: does a frame ``match`` reach the receiver?"""
        with self.sniffer(receiver) as rx:
            self.send(sender, frame)
            return rx_wait(rx, match, timeout) is not None

    def exchange(
        self, sender: Guest, frame: bytes, match: Callable[[bytes], bool], timeout: float = 0.8
    ) -> bytes | None:
        """Send ``frame`` and wait for an answer ``match`` on the sender's own eth0."""
        with self.sniffer(sender) as rx:
            self.send(sender, frame)
            return rx_wait(rx, match, timeout)

    @contextlib.contextmanager
    def sniffer(self, g: Guest) -> Iterator[_socket.socket]:
        sock = self.socket(g.ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with sock:
            sock.bind((g.iface, ETH_P_ALL))
            with contextlib.suppress(BlockingIOError):
                while True:  # drop what was queued before we look
                    sock.recv(65535, socket.MSG_DONTWAIT)
            yield sock

    def send(self, g: Guest, frame: bytes) -> None:
        with self.socket(g.ns, socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            sock.bind((g.iface, 0))
            sock.send(frame)

    def ping(self, src: Guest, dst_ip: str, timeout: float = 1.0) -> bool:
        """One ICMP echo from ``src``'s namespace; True if it was answered."""
        ident = secrets.randbelow(0xFFFF) + 1
        with self.socket(src.ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
            sock.sendto(_echo_request(ident), (dst_ip, 0))
            deadline = time.monotonic() + timeout
            while _wait(sock, "r", deadline):
                data = sock.recv(65535)
                icmp = data[(data[0] & 0x0F) * 4 :]
                if len(icmp) >= 8 and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                    return True
        return False

    def tcp_try(self, client: Guest, server: Guest, port: int, timeout: float = 1.0) -> str:
        """A TCP connection and an echo over it: ``"connected"``, ``"timed out"``, an errno."""
        deadline = time.monotonic() + timeout
        with contextlib.ExitStack() as stack:
            lsock = stack.enter_context(self.socket(server.ns, socket.AF_INET, socket.SOCK_STREAM))
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("0.0.0.0", port))
            lsock.listen(4)
            csock = stack.enter_context(self.socket(client.ns, socket.AF_INET, socket.SOCK_STREAM))
            csock.setblocking(False)
            err = csock.connect_ex((server.ip, port))
            if err not in (0, errno.EINPROGRESS):
                return errno.errorcode.get(err, str(err))
            if not _wait(csock, "w", deadline):
                return "timed out"
            err = csock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return errno.errorcode.get(err, str(err))
            if not _wait(lsock, "r", deadline):
                return "not accepted"
            conn, _ = lsock.accept()
            stack.enter_context(conn)
            csock.send(b"hello")
            if not _wait(conn, "r", deadline):
                return "no data"
            conn.send(conn.recv(100))
            if not _wait(csock, "r", deadline) or csock.recv(100) != b"hello":
                return "no echo"
            return "connected"

    def tcp_seen(
        self, client: Guest, server: Guest, dst: str, port: int, timeout: float = 1.5
    ) -> tuple[str, str | None]:
        """A TCP connection from ``client`` to ``dst``:``port``, listened for in ``server``.

        Returns the outcome (``"connected"``, ``"timed out"``, ``"not accepted"`` or an errno
        name such as ``"ECONNREFUSED"``) and the source address the server saw, if accepted.
        """
        deadline = time.monotonic() + timeout
        with contextlib.ExitStack() as stack:
            lsock = stack.enter_context(self.socket(server.ns, socket.AF_INET, socket.SOCK_STREAM))
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("0.0.0.0", port))
            lsock.listen(4)
            csock = stack.enter_context(self.socket(client.ns, socket.AF_INET, socket.SOCK_STREAM))
            csock.setblocking(False)
            err = csock.connect_ex((dst, port))
            if err not in (0, errno.EINPROGRESS):
                return errno.errorcode.get(err, str(err)), None
            if not _wait(csock, "w", deadline):
                return "timed out", None
            err = csock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return errno.errorcode.get(err, str(err)), None
            if not _wait(lsock, "r", deadline):
                return "not accepted", None
            conn, peer = lsock.accept()
            conn.close()
            return "connected", peer[0]
        raise AssertionError("unreachable")  # pragma: no cover


def rx_wait(sock: socket.socket, match: Callable[[bytes], bool], timeout: float) -> bytes | None:
    """The first received (not sent) frame on ``sock`` that ``match``es, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while _wait(sock, "r", deadline):
        data, addr = sock.recvfrom(65535)
        if addr[2] != PACKET_OUTGOING and match(data):
            return data
    return None


def _wait(sock: socket.socket, mode: str, deadline: float) -> bool:
    left = max(deadline - time.monotonic(), 0.0)
    r, w, _ = select.select([sock] if mode == "r" else [], [sock] if mode == "w" else [], [], left)
    return bool(r or w)


def _echo_request(ident: int) -> bytes:
    body = b"nwguard-demo-ping"
    head = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    data = head + body + b"\0" * ((len(head) + len(body)) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return head[:2] + struct.pack("!H", ~total & 0xFFFF) + head[4:] + body
