"""The daemon's IP learner: raw sockets on the ports that wait for their address.

The engine records a learning request per port (:mod:`nwguard.learned`); :meth:`Learner.sync`
opens one ``AF_PACKET`` socket per request (on the binding's ``linkdev`` if it has one, else on
the port) with a kernel filter (:data:`dhcpsnoop.BPF_ANY` / ``BPF_DHCP``), and one thread
reads them all (epoll):

* ``any``: the first usable address (:func:`dhcpsnoop.any_evidence`) is handed to
  ``on_event(port, Learned(ip))``; the socket closes (the guest is locked to that address).
* ``dhcp``: every DHCPACK to the guest adds a lease, RELEASE/DECLINE from it remove one, and
  expiry removes leases (``on_event(port, Acked | Released | Expired)``, see
  :data:`dhcpsnoop.LearningEvent`); the socket stays open to follow renewals.

A packet socket on a bridge port sees a frame before the bridge's nftables hooks, so learning
works while the interim rules drop the rest. Each socket is rate limited like libvirt's snooper
(10 frames/s sustained, bursts of 50): excess frames are read and ignored.

``on_event`` runs in the learner thread and must not block for long (the daemon queues the
engine work).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nwguard.daemon import dhcpsnoop
from nwguard.state.learned import LearnedStore, Learning
from nwguard.state.paths import Paths

log = logging.getLogger("nwguardd.learning")

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
RATE, BURST = 10.0, 50.0

Event = Callable[[str, dhcpsnoop.LearningEvent], None]
"""``on_event(port, event)``."""


def attach_filter(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    prog = b"".join(struct.pack("HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(prog)
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(insns), ctypes.addressof(buf))
    )


def open_capture(iface: str, insns: list[tuple[int, int, int, int]]) -> socket.socket:
    """A non-blocking packet socket on ``iface`` with filter ``insns``, its queue drained."""
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.htons(ETH_P_ALL)
    )
    try:
        attach_filter(sock, [(dhcpsnoop.RET, 0, 0, 0)])  # nothing until bound and filtered
        sock.bind((iface, ETH_P_ALL))
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.recv(1)
        attach_filter(sock, insns)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Capture:
    entry: Learning
    sock: socket.socket
    tokens: float = BURST
    stamp: float = field(default_factory=time.monotonic)
    dropped: int = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.stamp) * RATE)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False


class Learner:
    """One thread serving every learning request of one state directory."""

    def __init__(self, paths: Paths, on_event: Event) -> None:
        self.store = LearnedStore(paths)
        self.on_event = on_event
        self._sel = selectors.DefaultSelector()
        self._caps: dict[str, _Capture] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._want_sync = threading.Event()
        self._synced = threading.Condition()
        self._sync_asked = self._sync_done = 0
        self._thread = threading.Thread(target=self._run, name="nwguardd-learner", daemon=True)
        self.ports_done: set[str] = set()  # "any" ports that learned here, until their file says so

    # ---- control (any thread) ----

    def start(self) -> None:
        self._thread.start()
        self.sync(wait=True)

    def sync(self, wait: bool = False) -> None:
        """Re-read the learning requests in the learner thread; ``wait``: until it did (1 s)."""
        with self._synced:
            target = self._sync_asked = self._sync_asked + 1
        self._want_sync.set()
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"s")
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            with self._synced:
                self._synced.wait_for(lambda: self._sync_done >= target, timeout=1.0)

    def stop(self) -> None:
        self._stop.set()
        self.sync()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for port in list(self._caps):
            self._close(port)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def watching(self) -> dict[str, str]:
        """``{port: mode}`` of the ports being captured now (for status and tests)."""
        return {p: c.entry.mode for p, c in list(self._caps.items())}

    # ---- the thread ----

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._want_sync.is_set():
                self._want_sync.clear()
                with self._synced:
                    asked = self._sync_asked
                try:
                    self._sync()
                except Exception:
                    log.exception("learning: sync failed")
                with self._synced:
                    self._sync_done = asked
                    self._synced.notify_all()
            timeout = self._next_expiry()
            for key, _ in self._sel.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                self._read(key.data)
            self._expire()

    def _sync(self) -> None:
        wanted: dict[str, Learning] = {}
        for port, entry in self.store.all().items():
            if entry.mode == "dhcp" or (entry.mode == "any" and not entry.addresses()):
                if port in self.ports_done and entry.mode == "any":
                    continue
                wanted[port] = entry
            elif port in self.ports_done:
                self.ports_done.discard(port)
        self.ports_done &= set(self.store.ports())
        for port in list(self._caps):
            cap = self._caps[port]
            new = wanted.get(port)
            if new is None or (new.mode, new.iface, new.mac) != (
                cap.entry.mode,
                cap.entry.iface,
                cap.entry.mac,
            ):
                self._close(port)
            else:
                cap.entry = new
        for port, entry in wanted.items():
            if port not in self._caps:
                self._open(entry)

    def _open(self, entry: Learning) -> None:
        insns = dhcpsnoop.BPF_DHCP if entry.mode == "dhcp" else dhcpsnoop.BPF_ANY
        try:
            sock = open_capture(entry.iface, insns)
        except OSError as exc:
            log.warning(
                "learning on port %s: cannot capture on %s: %s",
                entry.port,
                entry.iface,
                exc.strerror,
            )
            return
        self._caps[entry.port] = _Capture(entry, sock)
        self._sel.register(sock, selectors.EVENT_READ, entry.port)
        log.info("learning the IP address of port %s (%s, MAC %s) on %s",
                 entry.port, entry.mode, entry.mac, entry.iface)  # fmt: skip

    def _close(self, port: str) -> None:
        cap = self._caps.pop(port, None)
        if cap is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(cap.sock)
            cap.sock.close()

    def _read(self, port: str) -> None:
        cap = self._caps.get(port)
        if cap is None:
            return
        for _ in range(64):
            try:
                data, addr = cap.sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:  # the device went away
                log.info("learning on port %s stopped: %s", port, exc.strerror)
                self._close(port)
                return
            if not cap.allow():
                continue
            outgoing = addr[2] == PACKET_OUTGOING
            to_guest = outgoing if cap.entry.iface == cap.entry.port else not outgoing
            if self._frame(cap, data, to_guest):
                return

    def _frame(self, cap: _Capture, data: bytes, to_guest: bool) -> bool:
        """Handle one frame; True when the capture was closed."""
        e = cap.entry
        if e.mode == "any":
            ip = dhcpsnoop.any_evidence(data, to_guest, e.mac)
            if ip is None:
                return False
            self.ports_done.add(e.port)
            self._close(e.port)
            self.on_event(e.port, dhcpsnoop.Learned(ip))
            return True
        ev = dhcpsnoop.dhcp_event(data, to_guest, e.mac, e.servers)
        if ev is None:
            return False
        if isinstance(ev, dhcpsnoop.Ignored):
            log.warning("port %s: DHCPACK for %s ignored: %s", e.port, ev.ip, ev.reason)
            return False
        self.on_event(e.port, ev)
        return False

    def _next_expiry(self) -> float:
        now, soonest = time.time(), 1.0
        for cap in self._caps.values():
            for lease in cap.entry.leases:
                if lease.expiry is not None:
                    soonest = min(soonest, max(lease.expiry - now, 0.0))
        return soonest

    def _expire(self) -> None:
        now = time.time()
        for cap in list(self._caps.values()):
            gone = [lease for lease in cap.entry.leases if not lease.valid(now)]
            if gone:
                cap.entry = cap.entry.with_leases(
                    tuple(x for x in cap.entry.leases if x.valid(now))
                )
                self.on_event(cap.entry.port, dhcpsnoop.Expired(tuple(x.ip for x in gone)))
