"""Throw-away network topologies in network namespaces, for kernel tests.

A :class:`Lab` builds a "host" namespace (where nwguard puts its rules) holding bridges,
"guest" namespaces whose ``eth0`` is a veth whose other end is a port of a host bridge, and
"outside" namespaces joined to the host by a plain routed veth. It then moves real traffic:
raw Ethernet frames (build them with scapy, pass ``bytes(pkt)`` or the packet), pings, TCP
connections and UDP exchanges, and reports what arrived.

>>> with Lab() as lab:                                  # doctest: +SKIP
...     a = lab.guest("a", ip="192.0.2.11")
...     b = lab.guest("b", ip="192.0.2.12")
...     assert lab.ping(a, b) and lab.tcp_connect(a, b, 8080)
...     frame = Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / UDP(dport=9)
...     assert lab.probe(a, frame, b)
...     assert lab.call_in(lab.host_ns, socket.if_nameindex)   # any callable, in the host

Names: every namespace is ``nwgt-<pid>-<rand>-<name>`` (the pid of the process that made it,
so :func:`sweep` removes only the leftovers of dead processes and never a namespace another
test run is still using). Generated device names carry the lab's random suffix and are at most
15 characters. All devices live inside the lab's own namespaces, never in the caller's.

Sockets are opened inside a namespace by switching the calling *thread* into it for the
duration of the ``socket()`` call (:func:`netns`); the socket stays in that namespace after
the thread has switched back, so sending and capturing need no child process. Code that must
*run* inside a namespace (nwguard's API, say) goes through :meth:`Lab.call_in`, which forks.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import ipaddress
import json
import os
import pickle
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from . import pktsend

PREFIX = "nwgt-"
NETNS_DIR = Path("/run/netns")
IFNAMSIZ = 15
PKTSEND = Path(pktsend.__file__)

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_OPEN_LABS: set[Lab] = set()

# Default subnets (documentation ranges: they route nowhere, even by mistake).
GUEST_NET = ipaddress.ip_network("192.0.2.0/24")
OUTSIDE_NETS = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"))


class LabError(RuntimeError):
    """Building, using or tearing down a lab failed."""


class LabCallTimeout(LabError, TimeoutError):
    """A :meth:`Lab.call_in` did not finish in time; its child was killed."""


# --------------------------------------------------------------------------------------------
# Namespaces


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


@contextlib.contextmanager
def netns(ns: str) -> Iterator[None]:
    """Run the body with the calling thread in network namespace ``ns`` (by name).

    Only this thread moves, and it always moves back. Sockets made in the body stay in ``ns``.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def enter_netns_process(ns: str, *, remount_sys: bool = True) -> None:
    """Move this (single-threaded, freshly forked) process into ``ns`` for good.

    Like ``ip netns exec``, it also gets a private mount namespace with ``/sys`` remounted,
    so ``/sys/class/net`` shows the namespace's devices.
    """
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    if not remount_sys:
        return
    with contextlib.suppress(OSError):
        _check(_libc.unshare(CLONE_NEWNS), "unshare")
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None), "mount --make-rslave")
        _check(_libc.umount2(b"/sys", MNT_DETACH), "umount /sys")
        _check(_libc.mount(ns.encode(), b"/sys", b"sysfs", 0, None), "mount sysfs")


def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _owner_pid(ns: str, prefix: str) -> int | None:
    head = ns[len(prefix) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(prefix: str = PREFIX) -> list[str]:
    """Delete the lab namespaces nobody uses any more; return their names.

    A namespace is a leftover when the process named in it is dead, or is this process but
    no open :class:`Lab` here owns it. Other processes' live labs are never touched.
    """
    mine = {ns for lab in _OPEN_LABS for ns in lab.namespaces}
    removed = []
    for ns in list_netns():
        if not ns.startswith(prefix) or ns in mine:
            continue
        pid = _owner_pid(ns, prefix)
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            continue
        _kill_netns_pids(ns)
        if _ip("netns", "del", ns, check=False).returncode == 0:
            removed.append(ns)
    return removed


@functools.cache
def kernel_unavailable_reason() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    for tool in ("ip", "nft"):
        if not any(Path(d, tool).exists() for d in os.get_exec_path() + ["/usr/sbin", "/sbin"]):
            return f"kernel tests need {tool!r}"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *argv], check=check)


def _run(
    argv: list[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, input=input
    )
    if check and out.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} exited {out.returncode}: {(out.stderr or out.stdout).strip()}"
        )
    return out


def _kill_netns_pids(ns: str) -> None:
    """SIGKILL every process still living in ``ns`` (left there by a test), never ourselves."""
    out = _ip("netns", "pids", ns, check=False)
    for word in out.stdout.split():
        pid = int(word)
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# What a lab is made of


@dataclass(frozen=True, slots=True)
class Bridge:
    """A bridge in the lab's host namespace."""

    name: str
    ns: str
    mac: str
    ip: str | None = None
    prefix: int = 24
    ip6: str | None = None

    @property
    def iface(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Node:
    """A namespace with one interface ``iface`` reaching the host namespace by a veth.

    ``kind`` is ``"guest"`` (its veth peer ``port`` is a port of ``bridge``) or ``"outside"``
    (``port`` is a routed interface of the host holding ``host_ip``).
    """

    name: str
    kind: str
    ns: str
    iface: str
    port: str
    host_ns: str
    mac: str
    ip: str | None
    prefix: int
    ip6: str | None = None
    bridge: str | None = None
    host_ip: str | None = None
    host_ip6: str | None = None

    @property
    def port_end(self) -> tuple[str, str]:
        """``(host namespace, port)``: this node's veth end on the host side.

        There, frames *from* the node are received and frames *to* it are sent: sniff the
        latter with ``outgoing=True``.
        """
        return (self.host_ns, self.port)


Guest = Node
Where = Node | Bridge | tuple[str, str]  # an interface: a node's iface, a bridge, (ns, iface)
NsLike = Node | Bridge | str  # a namespace: a node's, the host's (bridge), or by name
Predicate = Callable[[bytes], bool]
Match = Predicate | str | None  # a predicate over frame bytes, or a tcpdump expression


def _where(target: Where) -> tuple[str, str]:
    if isinstance(target, Node | Bridge):
        return target.ns, target.iface
    ns, iface = target
    return ns, iface


def _ns_of(target: NsLike) -> str:
    return target if isinstance(target, str) else target.ns


def _ip_of(target: Node | Bridge | str) -> str:
    if isinstance(target, str):
        return target
    if target.ip is None:
        raise LabError(f"{target.name} has no IPv4 address; pass one explicitly")
    return target.ip


def _dst_addr(server: NsLike, dst: str | None) -> str:
    if dst is not None:
        return dst
    if isinstance(server, str):
        raise LabError(f"server given as namespace {server!r}: pass dst= (its address)")
    return _ip_of(server)


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def random_mac(oui: str = "52:54:00") -> str:
    """A random unicast MAC under ``oui`` (libvirt's 52:54:00 by default)."""
    return oui + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def _split_addr(addr: str, prefix: int) -> tuple[str, int]:
    if "/" in addr:
        addr, plen = addr.split("/", 1)
        prefix = int(plen)
    ipaddress.ip_address(addr)  # validates
    return addr, prefix


def _ifname(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or name.strip() != name:
        raise LabError(f"bad interface name {name!r} (1..{IFNAMSIZ} chars)")
    return name


# --------------------------------------------------------------------------------------------
# Frames


def _frame_bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else bytes(frame)


def _matcher(match: Match, sent: bytes) -> tuple[Predicate | None, str | None]:
    """Split ``match`` into a Python predicate and a kernel BPF expression."""
    if isinstance(match, str):
        return None, match
    if match is not None:
        return match, None
    return (lambda rx: rx[: len(sent)] == sent), None


class Sniffer:
    """A capture running on one interface from the moment it is made until :meth:`close`.

    Frames the interface itself sends are left out unless ``outgoing``. ``filter`` is a
    tcpdump expression compiled into the kernel; ``match`` a predicate over the frame bytes.
    """

    def __init__(
        self,
        where: Where,
        *,
        filter: str | None = None,
        promisc: bool = False,
        outgoing: bool = False,
    ) -> None:
        self.ns, self.iface = _where(where)
        self.outgoing = outgoing
        with netns(self.ns):
            self.sock = pktsend.packet_socket(self.iface, bpf=filter, promisc=promisc)
        self.frames: list[bytes] = []

    def collect(
        self, timeout: float = 1.0, *, count: int | None = None, match: Predicate | None = None
    ) -> list[bytes]:
        """Frames (matching ``match``) arriving within ``timeout`` s, or until ``count`` came."""
        got = pktsend.capture(self.sock, timeout, match=match, count=count, outgoing=self.outgoing)
        self.frames.extend(got)
        return got

    def wait_for(self, match: Predicate | None, timeout: float = 1.0) -> bytes | None:
        """The first frame matching ``match`` within ``timeout`` seconds, or None."""
        got = self.collect(timeout, count=1, match=match)
        return got[0] if got else None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Forked calls


class Task:
    """A callable running in a forked child inside a namespace; see :meth:`Lab.start_in`."""

    def __init__(self, ns: str, func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.ns = ns
        self.name = getattr(func, "__qualname__", repr(func))
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child: never returns
            os.close(r)
            _child_main(w, ns, func, args, kwargs)
        os.close(w)
        self.pid: int | None = pid
        self._r: int | None = r
        self._buf = bytearray()

    def result(self, timeout: float = 30.0) -> Any:
        """Wait for the call's return value (or re-raise its exception) for ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self._r is not None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._r], [], [], max(left, 0.0))
            if not ready:
                self.kill()
                raise LabCallTimeout(f"{self.name} in {self.ns} took over {timeout}s; killed")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                os.close(self._r)
                self._r = None
            self._buf.extend(chunk)
        self._reap()
        return _unpack_result(bytes(self._buf), self.name, self.ns)

    def kill(self) -> None:
        """Kill the child (if still running) and release its pipe."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()
        if self._r is not None:
            os.close(self._r)
            self._r = None

    def _reap(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = None


def _child_main(w: int, ns: str, func: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    code = 0
    try:
        try:
            enter_netns_process(ns)
            result: tuple = ("ok", func(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = ("err", exc, traceback.format_exc())
        try:
            data = pickle.dumps(result)
        except Exception as exc:  # noqa: BLE001
            tb = result[2] if result[0] == "err" else ""
            data = pickle.dumps(("err", LabError(f"cannot pickle the result: {exc!r}"), tb))
        view = memoryview(data)
        while view:
            view = view[os.write(w, view) :]
    except BaseException:  # noqa: BLE001
        code = 70
    finally:
        os._exit(code)


def _unpack_result(data: bytes, name: str, ns: str) -> Any:
    if not data:
        raise LabError(f"{name} in {ns} died without a result")
    try:
        result = pickle.loads(data)
    except Exception as exc:
        raise LabError(f"{name} in {ns}: cannot unpickle its result: {exc!r}") from exc
    if result[0] == "ok":
        return result[1]
    exc, tb = result[1], result[2]
    exc.add_note(f"raised by {name} in namespace {ns}:\n{tb}")
    raise exc


# --------------------------------------------------------------------------------------------
# The lab


class Lab:
    """A set of namespaces, devices, processes and sockets, all removed by :meth:`close`."""

    def __init__(self, *, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.tag = secrets.token_hex(2)  # in every generated name
        self.namespaces: list[str] = []
        self.bridges: dict[str, Bridge] = {}
        self.nodes: dict[str, Node] = {}
        self._host: str | None = None
        self._seq = 0
        self._guest_hosts = iter(range(11, 255))
        self._outside_nets = iter(OUTSIDE_NETS)
        self._procs: list[subprocess.Popen] = []
        self._tasks: list[Task] = []
        self._socks: list[socket.socket] = []
        self._closed = False
        _OPEN_LABS.add(self)

    # ---- lifetime ----

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill what the lab started and delete its namespaces (and so all their devices)."""
        if self._closed:
            return
        self._closed = True
        _OPEN_LABS.discard(self)
        for task in self._tasks:
            task.kill()
        for sock in self._socks:
            sock.close()
        for proc in self._procs:
            _stop(proc)
        errors = []
        for ns in reversed(self.namespaces):
            _kill_netns_pids(ns)
            out = _ip("netns", "del", ns, check=False)
            if out.returncode != 0 and ns in list_netns():
                errors.append(f"{ns}: {out.stderr.strip()}")
        if errors:
            raise LabError("could not delete namespaces: " + "; ".join(errors))

    # ---- names ----

    def ns_name(self, name: str) -> str:
        """The full namespace name this lab uses for ``name``."""
        return f"{self.prefix}{os.getpid()}-{self.tag}-{name}"

    def devname(self, stem: str) -> str:
        """A fresh device name ``<stem>-<tag><n>`` of at most 15 characters."""
        self._seq += 1
        return _ifname(f"{stem}-{self.tag}{self._seq}")

    # ---- building ----

    def namespace(self, name: str) -> str:
        """Create a bare namespace (loopback up, IPv6 DAD off, rp_filter off); return its name."""
        if self._closed:
            raise LabError("lab is closed")
        if not _NAME_RE.match(name):
            raise LabError(f"bad namespace name {name!r}")
        ns = self.ns_name(name)
        if ns in self.namespaces:
            raise LabError(f"namespace {name!r} exists already")
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        self.sysctl(
            ns,
            {
                "net.ipv6.conf.all.accept_dad": 0,
                "net.ipv6.conf.default.accept_dad": 0,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
            },
        )
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def host(self, *, forwarding: bool | None = None) -> str:
        """The host namespace, created on first use; return its name.

        It has bridge-nf-call-iptables/ip6tables on and IP forwarding off (whatever the
        machine's own setting), unless ``forwarding`` says otherwise.
        """
        if self._host is None:
            self._host = self.namespace("host")
            self.sysctl(
                self._host,
                {
                    "net.bridge.bridge-nf-call-iptables": 1,
                    "net.bridge.bridge-nf-call-ip6tables": 1,
                },
            )
            forwarding = bool(forwarding)
        if forwarding is not None:
            self.set_forwarding(forwarding)
        return self._host

    @property
    def host_ns(self) -> str:
        return self.host() if self._host is None else self._host

    def set_forwarding(self, on: bool = True) -> None:
        """Turn IPv4 and IPv6 forwarding in the host namespace on or off."""
        v = int(on)
        self.sysctl(self.host_ns, {"net.ipv4.ip_forward": v, "net.ipv6.conf.all.forwarding": v})

    def bridge(
        self,
        name: str | None = None,
        *,
        ip: str | None = None,
        prefix: int = 24,
        ip6: str | None = None,
        mac: str | None = None,
        mcast_snooping: bool = True,
    ) -> Bridge:
        """A bridge in the host namespace (STP off, so ports forward at once), up.

        ``mcast_snooping=False``: the bridge sends no IGMP report of its own (a test that
        counts every frame a port gets)."""
        host = self.host_ns
        name = _ifname(name) if name else self.devname("br")
        mac = mac or random_mac()
        _ip("-n", host, "link", "add", name, "address", mac, "up", "type", "bridge",
            "stp_state", "0", "forward_delay", "0",
            "mcast_snooping", "1" if mcast_snooping else "0")  # fmt: skip
        if ip is not None:
            ip, prefix = _split_addr(ip, prefix)
            _ip("-n", host, "addr", "add", f"{ip}/{prefix}", "dev", name)
        if ip6 is not None:
            ip6, plen6 = _split_addr(ip6, 64)
            _ip("-n", host, "-6", "addr", "add", f"{ip6}/{plen6}", "dev", name, "nodad")
        br = Bridge(name=name, ns=host, mac=mac, ip=ip, prefix=prefix, ip6=ip6)
        self.bridges[name] = br
        return br

    def guest(
        self,
        name: str,
        *,
        mac: str | None = None,
        ip: str | None = "auto",
        prefix: int = 24,
        ip6: str | None = None,
        bridge: Bridge | str | None = None,
        port: str | None = None,
        gateway: str | None = None,
        iface: str = "eth0",
    ) -> Node:
        """A guest namespace whose ``iface`` is bridged into the host by a veth.

        ``ip="auto"`` takes the next free address of 192.0.2.0/24 (from .11); ``None``
        leaves it without IPv4. ``ip``/``ip6`` may carry their prefix ("10.0.0.2/16").
        ``bridge`` defaults to the lab's first bridge, made if there is none. The host-side
        port is named ``port`` or ``vnet-<tag><n>``; its MAC is the guest's with 0xfe first,
        as libvirt does for taps.
        """
        if bridge is None:
            br = next(iter(self.bridges.values()), None) or self.bridge()
        else:
            br = self.bridges[bridge] if isinstance(bridge, str) else bridge
        if ip == "auto":
            ip = str(GUEST_NET[next(self._guest_hosts)])
            prefix = GUEST_NET.prefixlen
        port = _ifname(port) if port else self.devname("vnet")
        mac = mac or random_mac()
        ns = self.namespace(name)
        _ip("-n", br.ns, "link", "add", port, "address", "fe" + mac[2:], "master", br.name,
            "up", "type", "veth", "peer", "name", _ifname(iface), "address", mac,
            "netns", ns)  # fmt: skip
        ip, prefix, ip6 = self._address(ns, iface, ip, prefix, ip6, gateway)
        node = Node(name=name, kind="guest", ns=ns, iface=iface, port=port, host_ns=br.ns,
                    mac=mac, ip=ip, prefix=prefix, ip6=ip6, bridge=br.name)  # fmt: skip
        self.nodes[name] = node
        return node

    def outside(
        self,
        name: str = "outside",
        *,
        ip: str | None = "auto",
        host_ip: str | None = "auto",
        prefix: int = 24,
        ip6: str | None = None,
        host_ip6: str | None = None,
        mac: str | None = None,
        port: str | None = None,
        gateway: str | None = None,
        iface: str = "eth0",
    ) -> Node:
        """A namespace joined to the host namespace by a plain (routed, not bridged) veth.

        ``"auto"`` addresses come from 198.51.100.0/24 for the first outside node and
        203.0.113.0/24 for the second: the node gets .2, the host side .1. No route is added
        unless ``gateway`` is given (e.g. ``gateway=node.host_ip`` for routed-mode tests).
        """
        host = self.host_ns
        if "auto" in (ip, host_ip):
            net = next(self._outside_nets, None)
            if net is None:
                raise LabError("no more automatic outside subnets; pass ip= and host_ip=")
            ip = str(net[2]) if ip == "auto" else ip
            host_ip = str(net[1]) if host_ip == "auto" else host_ip
            prefix = net.prefixlen
        port = _ifname(port) if port else self.devname("ext")
        mac = mac or random_mac()
        ns = self.namespace(name)
        _ip("-n", host, "link", "add", port, "up", "type", "veth", "peer", "name",
            _ifname(iface), "address", mac, "netns", ns)  # fmt: skip
        if host_ip is not None:
            host_ip, hplen = _split_addr(host_ip, prefix)
            _ip("-n", host, "addr", "add", f"{host_ip}/{hplen}", "dev", port)
        if host_ip6 is not None:
            host_ip6, h6len = _split_addr(host_ip6, 64)
            _ip("-n", host, "-6", "addr", "add", f"{host_ip6}/{h6len}", "dev", port, "nodad")
        ip, prefix, ip6 = self._address(ns, iface, ip, prefix, ip6, gateway)
        node = Node(name=name, kind="outside", ns=ns, iface=iface, port=port, host_ns=host,
                    mac=mac, ip=ip, prefix=prefix, ip6=ip6, host_ip=host_ip,
                    host_ip6=host_ip6)  # fmt: skip
        self.nodes[name] = node
        return node

    def _address(
        self,
        ns: str,
        iface: str,
        ip: str | None,
        prefix: int,
        ip6: str | None,
        gateway: str | None,
    ) -> tuple[str | None, int, str | None]:
        if ip is not None:
            ip, prefix = _split_addr(ip, prefix)
            _ip("-n", ns, "addr", "add", f"{ip}/{prefix}", "dev", iface)
        if ip6 is not None:
            ip6, plen6 = _split_addr(ip6, 64)
            _ip("-n", ns, "-6", "addr", "add", f"{ip6}/{plen6}", "dev", iface, "nodad")
        _ip("-n", ns, "link", "set", iface, "up")
        if gateway is not None:
            self.route(ns, "default", gateway)
        return ip, prefix, ip6

    def route(self, where: NsLike, dst: str, via: str) -> None:
        """Add a route ``dst`` (a prefix or "default") via ``via`` in a namespace."""
        fam = "-6" if ":" in via else "-4"
        _ip("-n", _ns_of(where), fam, "route", "add", dst, "via", via)

    # ---- running things ----

    def sysctl(self, where: NsLike, values: dict[str, int | str]) -> None:
        """Write sysctls (``{"net.ipv4.ip_forward": 1}``) inside a namespace."""
        ns = _ns_of(where)
        with netns(ns):
            for key, value in values.items():
                path = Path("/proc/sys", *key.split("."))
                try:
                    path.write_text(f"{value}\n")
                except OSError as exc:
                    raise LabError(f"sysctl {key}={value} in {ns}: {exc}") from exc

    def read_sysctl(self, where: NsLike, key: str) -> str:
        """Read one sysctl inside a namespace."""
        with netns(_ns_of(where)):
            return Path("/proc/sys", *key.split(".")).read_text().strip()

    def run(
        self,
        where: NsLike | None,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a namespace (``ip netns exec``); ``None`` runs it right here.

        Output is captured as text; with ``check`` a non-zero exit raises :class:`LabError`
        carrying stderr.
        """
        pre = [] if where is None else ["ip", "netns", "exec", _ns_of(where)]
        return _run([*pre, *argv], check=check, timeout=timeout, input=input)

    def popen(self, where: NsLike, *argv: str, **kwargs: Any) -> subprocess.Popen:
        """Start a long-running command inside a namespace; it is killed by :meth:`close`."""
        proc = subprocess.Popen(["ip", "netns", "exec", _ns_of(where), *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def start_in(self, where: NsLike, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Start ``func(*args, **kwargs)`` in a forked child inside a namespace.

        The function need not be picklable (the child is a fork); its result must be. Collect
        it with ``task.result(timeout)``; :meth:`close` kills it if still running.
        """
        task = Task(_ns_of(where), func, args, kwargs)
        self._tasks.append(task)
        return task

    def call_in(
        self, where: NsLike, func: Callable[..., Any], *args: Any, timeout: float = 30.0, **kw: Any
    ) -> Any:
        """Run ``func(*args, **kw)`` inside a namespace and return its result.

        Runs in a forked child that joined the namespace (and a private mount namespace with
        ``/sys`` remounted, like ``ip netns exec``); an exception is re-raised here with the
        child's traceback attached as a note. After ``timeout`` s the child is killed and
        :class:`LabCallTimeout` raised.
        """
        return self.start_in(where, func, *args, **kw).result(timeout)

    def open_socket(
        self, where: NsLike, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> socket.socket:  # fmt: skip
        """A socket created inside a namespace (closed by :meth:`close` if not before)."""
        with netns(_ns_of(where)):
            sock = socket.socket(family, type, proto)
        self._socks.append(sock)
        return sock

    def nft_ruleset(self, where: NsLike | None = None) -> dict[str, Any]:
        """``nft -j list ruleset`` of a namespace (the host by default), parsed."""
        out = self.run(self.host_ns if where is None else where, "nft", "-j", "list", "ruleset")
        return json.loads(out.stdout) if out.stdout.strip() else {"nftables": []}

    # ---- frames ----

    def sniffer(
        self,
        where: Where,
        *,
        filter: str | None = None,
        promisc: bool = False,
        outgoing: bool = False,
    ) -> Sniffer:
        """Start capturing on an interface now; see :class:`Sniffer`."""
        sn = Sniffer(where, filter=filter, promisc=promisc, outgoing=outgoing)
        self._socks.append(sn.sock)
        return sn

    def sniff(
        self,
        where: Where,
        *,
        timeout: float = 1.0,
        filter: str | None = None,
        match: Predicate | None = None,
        count: int | None = None,
        outgoing: bool = False,
    ) -> list[bytes]:
        """Capture on an interface for ``timeout`` seconds (or until ``count`` frames).

        ``filter`` is a tcpdump expression applied in the kernel, ``match`` a predicate;
        ``outgoing`` adds the frames the interface sends to those it receives.
        """
        with self.sniffer(where, filter=filter, outgoing=outgoing) as sn:
            return sn.collect(timeout, count=count, match=match)

    def send(self, where: Where, *frames: Any) -> None:
        """Send raw Ethernet frames (bytes or scapy packets) out of an interface."""
        ns, iface = _where(where)
        with netns(ns):
            sock = pktsend.send_socket(iface)
        with sock:
            pktsend.send_frames(sock, [_frame_bytes(f) for f in frames])

    def transmit(
        self,
        sender: Where,
        frame: Any,
        receiver: Where,
        *,
        match: Match = None,
        timeout: float = 1.0,
        promisc: bool = False,
        outgoing: bool = False,
    ) -> bytes | None:
        """Send ``frame`` from ``sender``; return the first matching frame ``receiver`` got.

        ``match``: None means "starts with the very bytes sent" (right for bridged frames);
        a tcpdump expression (str) filters in the kernel; a callable decides on the bytes
        (e.g. ``lambda b: UDP in Ether(b)``, for frames a router or NAT rewrote).
        Returns None when nothing matching came within ``timeout`` seconds.

        The receiver counts the frames its interface *receives*; with ``outgoing`` also those
        it *sends*, which is what a host-side port (``guest.port_end``) does with the frames
        the bridge forwards to its guest.
        """
        data = _frame_bytes(frame)
        pred, bpf = _matcher(match, data)
        with self.sniffer(receiver, filter=bpf, promisc=promisc, outgoing=outgoing) as sn:
            self.send(sender, data)
            return sn.wait_for(pred, timeout)

    def probe(
        self,
        sender: Where,
        frame: Any,
        receiver: Where,
        *,
        match: Match = None,
        timeout: float = 1.0,
        promisc: bool = False,
        outgoing: bool = False,
    ) -> bool:
        """Whether ``frame`` sent from ``sender`` reaches ``receiver``; see :meth:`transmit`."""
        got = self.transmit(
            sender,
            frame,
            receiver,
            match=match,
            timeout=timeout,
            promisc=promisc,
            outgoing=outgoing,
        )
        return got is not None

    # ---- connections ----

    def ping(self, src: NsLike, dst: Node | Bridge | str, *, timeout: float = 1.0) -> bool:
        """One ICMP (or ICMPv6) echo from the namespace of ``src``; True if answered."""
        addr = _ip_of(dst)
        fam = _family(addr)
        proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
        ident = secrets.randbelow(0xFFFF) + 1
        with self._tmp_socket(src, fam, socket.SOCK_RAW, proto) as sock:
            sock.sendto(_echo_request(fam, ident), (addr, 0))
            deadline = time.monotonic() + timeout
            while True:
                ready, _, _ = select.select([sock], [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    return False
                data = sock.recv(65535)
                if fam == socket.AF_INET:
                    data = data[(data[0] & 0x0F) * 4 :]
                reply = 129 if fam == socket.AF_INET6 else 0
                if (
                    len(data) >= 8
                    and data[0] == reply
                    and struct.unpack("!H", data[4:6])[0] == ident
                ):
                    return True

    def tcp_try(
        self,
        client: NsLike,
        server: NsLike,
        port: int,
        *,
        dst: str | None = None,
        timeout: float = 1.0,
        listen: bool = True,
        payload: bytes = b"nwguard-lab",
    ) -> str:
        """Try a TCP connection and an echo over it; return ``"ok"`` or what went wrong.

        The listener binds all addresses of the server's namespace (unless ``listen`` is
        False, to test refusals); ``dst`` defaults to the server's address. Results besides
        "ok": ``"timeout"`` (dropped), an errno name such as ``"ECONNREFUSED"`` (rejected
        with a reset) or ``"EHOSTUNREACH"`` (rejected with ICMP), ``"no-accept"`` (the
        client connected but the server never saw it), ``"no-echo"``.
        """
        addr = _dst_addr(server, dst)
        fam = _family(addr)
        deadline = time.monotonic() + timeout
        with contextlib.ExitStack() as stack:
            lsock = None
            if listen:
                lsock = stack.enter_context(self._tmp_socket(server, fam, socket.SOCK_STREAM))
                lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                lsock.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
                lsock.listen(8)
                lsock.setblocking(False)
            csock = stack.enter_context(self._tmp_socket(client, fam, socket.SOCK_STREAM))
            csock.setblocking(False)
            err = csock.connect_ex((addr, port))
            if err not in (0, errno.EINPROGRESS):
                return errno.errorcode.get(err, str(err))
            if not _wait(csock, "w", deadline):
                return "timeout"
            err = csock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return errno.errorcode.get(err, str(err))
            if lsock is None:
                return "ok"
            if not _wait(lsock, "r", deadline):
                return "no-accept"
            conn, _ = lsock.accept()
            stack.enter_context(conn)
            conn.setblocking(False)
            csock.send(payload)
            if not _wait(conn, "r", deadline):
                return "no-echo"
            conn.send(conn.recv(65535))
            if not _wait(csock, "r", deadline) or csock.recv(65535) != payload:
                return "no-echo"
            return "ok"

    def tcp_connect(
        self,
        client: NsLike,
        server: NsLike,
        port: int,
        *,
        dst: str | None = None,
        timeout: float = 1.0,
    ) -> bool:
        """Whether a TCP connection (and an echo over it) works; see :meth:`tcp_try`."""
        return self.tcp_try(client, server, port, dst=dst, timeout=timeout) == "ok"

    def udp_exchange(
        self,
        client: NsLike,
        server: NsLike,
        port: int,
        *,
        dst: str | None = None,
        timeout: float = 1.0,
        payload: bytes = b"nwguard-lab",
        reply: bool = True,
        src_port: int = 0,
    ) -> bool:
        """Send a datagram to ``server:port`` and (if ``reply``) get it echoed back.

        True when the server got it and, with ``reply``, the client got the echo.
        """
        addr = _dst_addr(server, dst)
        fam = _family(addr)
        any_addr = "::" if fam == socket.AF_INET6 else "0.0.0.0"
        deadline = time.monotonic() + timeout
        with (
            self._tmp_socket(server, fam, socket.SOCK_DGRAM) as ssock,
            self._tmp_socket(client, fam, socket.SOCK_DGRAM) as csock,
        ):
            ssock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ssock.bind((any_addr, port))
            if src_port:
                csock.bind((any_addr, src_port))
            csock.sendto(payload, (addr, port))
            if not _wait(ssock, "r", deadline):
                return False
            data, peer = ssock.recvfrom(65535)
            if data != payload:
                return False
            if not reply:
                return True
            ssock.sendto(data, peer)
            return _wait(csock, "r", deadline) and csock.recv(65535) == payload

    @contextlib.contextmanager
    def _tmp_socket(
        self, where: NsLike, family: int, type: int, proto: int = 0
    ) -> Iterator[socket.socket]:
        with netns(_ns_of(where)):
            sock = socket.socket(family, type, proto)
        with sock:
            yield sock


def _wait(sock: socket.socket, mode: str, deadline: float) -> bool:
    left = max(deadline - time.monotonic(), 0.0)
    r, w, _ = select.select([sock] if mode == "r" else [], [sock] if mode == "w" else [], [], left)
    return bool(r or w)


def _echo_request(family: int, ident: int) -> bytes:
    body = b"nwguard-lab-ping"
    if family == socket.AF_INET6:  # the kernel fills in the ICMPv6 checksum
        return struct.pack("!BBHHH", 128, 0, 0, ident, 1) + body
    head = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    return head[:2] + struct.pack("!H", _inet_checksum(head + body)) + head[4:] + body


def _inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@atexit.register
def _close_all() -> None:
    for lab in list(_OPEN_LABS):
        with contextlib.suppress(Exception):
            lab.close()
