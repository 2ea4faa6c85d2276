"""``nwguardd``: one engine, served over Unix sockets, keeping the kernel rules true.

What it does (issue 5):

* serves the Client's operations (:mod:`.protocol`) on ``<state>/nwguardd.sock`` (mode 0600,
  and the peer must be uid 0, checked with ``SO_PEERCRED``) and queries only on
  ``<state>/nwguardd-ro.sock`` (mode 0666); every operation runs under the nwguard lock, so
  requests of many clients (and of embedded nwguard processes) are serialised;
* restores nwguard's tables when someone else removes or changes them (``nft monitor``
  events, plus a periodic structural check): one atomic re-apply, logged with what was
  missing; SIGHUP forces it;
* reconciles at start (bindings of vanished ports removed, every port recompiled, the whole
  state re-applied, autostart networks started) and unbinds ports that disappear later;
* learns guests' IPv4 addresses (:mod:`.learning`) for bindings that need ``$IP``.

SIGTERM/SIGINT stop it and leave every rule in place. Killing it at any moment leaves the
kernel with the last committed transaction (each change is one), and the next start repairs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import functools
import inspect
import logging
import os
import queue
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from nwguard import __version__
from nwguard.api import CHANGE, QUERY, Client, Kind
from nwguard.backends.nft.render import NftBatch, to_nft
from nwguard.compile.kernel_state import full
from nwguard.compile.learning import LearningRequest
from nwguard.daemon import monitor as mon
from nwguard.daemon import networks
from nwguard.daemon import protocol as P
from nwguard.daemon.dhcpsnoop import Acked, Expired, Learned, LearningEvent, Released
from nwguard.daemon.firewalld import FirewalldWatcher
from nwguard.daemon.learning import Learner
from nwguard.engine.ports import Engine, generation
from nwguard.engine.results import Change
from nwguard.errors import NwguardError, PermissionDeniedError
from nwguard.state.learned import LearnedStore, Lease

log = logging.getLogger("nwguardd")

MAX_CLIENTS = 64
FALLBACK_CHECK = 1.0  # seconds between structural checks while nft monitor is not listening
IPTABLES_CHECK = 0.5  # on the iptables backend (repairs within 1 s)
IDLE_TIMEOUT = 300.0


# ----------------------------------------------------------------------------- the daemon


class Options(argparse.Namespace):
    config_dir: str | None = None
    state_dir: str | None = None
    check_interval: float = 30.0
    port_interval: float = 1.0
    learning: bool = True
    log_level: str = "info"


class Daemon:
    """One nwguardd: a Client served on two sockets, and the threads that keep the kernel true.

    Threads: one per connection (requests), ``monitor`` (reads ``nft monitor``), ``check``
    (compares and re-applies), ``ports`` (vanished ports, learning requests), ``learner``
    (raw sockets), ``jobs`` (engine work the learner and the port watcher ask for). Every
    engine operation runs under :meth:`op` (the nwguard lock), so they are serialised with
    each other and with embedded nwguard processes.
    """

    def __init__(self, client: Client, opts: Options) -> None:
        self.client, self.ctx, self.paths, self.opts = client, client.ctx, client.ctx.paths, opts
        self.methods = self.registry()
        self.own = mon.OwnThreads()
        self.started = time.time()
        self.stopping = threading.Event()
        self.jobs: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue()
        self.monitor = mon.NftMonitor(self.own, self._foreign_change)
        self.learner = Learner(self.paths, self._learning_event) if opts.learning else None
        self.ctx.on_learning = self._learning_requested  # the engine tells us, in memory
        self.listeners: list[Listener] = []
        self._check = threading.Event()
        self._check_reasons: list[str] = []
        self._check_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pidfd: int | None = None
        self._stamp: str | None = None
        self._broken: set[tuple[str, str]] = set()
        self._expected_cache: tuple[str | None, tuple[NftBatch, mon.Fingerprint, int]] | None = None
        self._learned_stamp: str | None = None
        self._gone_queued: set[str] = set()
        self.firewalld = FirewalldWatcher(
            self.paths, lambda: self.ctx.network_host().firewalld(), self.op, self.request_check
        )

    # ---- the lock and the engine ----

    @contextlib.contextmanager
    def op(self) -> Iterator[None]:
        """Hold the nwguard lock around one operation.

        The engine (its applied state in memory) is kept from one operation to the next
        unless the state files changed in between: an embedded nwguard process (or a
        ``NWGUARD_NO_DAEMON=1`` command) may have changed them under the same lock.
        """
        with self.ctx.lock():
            if state_stamp(self.paths) != self._stamp:
                self.ctx.drop_engine()
            try:
                yield
            finally:
                self._stamp = state_stamp(self.paths)

    def engine(self) -> Engine:
        """The engine the client uses too (call with the lock held)."""
        return self.ctx.engine()

    def filters(self) -> dict[str, Any]:
        return {f.name: f for f in self.client.nwfilter_list()}

    # ---- life ----

    def run(self) -> int:
        self._lock_instance()
        wake = self._install_signals()
        log.info("nwguardd %s starting (pid %d): config %s, state %s",
                 __version__, os.getpid(), self.paths.config_dir, self.paths.state_dir)  # fmt: skip
        self.monitor.start()
        self._wait_for_monitor()
        self.reconcile()
        if self.learner is not None:
            self.learner.start()
        self.firewalld.start()
        for target, name in ((self._job_loop, "jobs"), (self._check_loop, "check"),
                             (self._port_loop, "ports")):  # fmt: skip
            t = threading.Thread(target=target, name=f"nwguardd-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.listeners = [Listener(self, self.paths.socket, readonly=False),
                          Listener(self, self.paths.socket_ro, readonly=True)]  # fmt: skip
        for lst in self.listeners:
            lst.start()
        sd_notify("READY=1")
        log.info("ready: %s (control), %s (read-only)", self.paths.socket, self.paths.socket_ro)
        try:
            self._signal_loop(wake)
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        sd_notify("STOPPING=1")
        self.stopping.set()
        for lst in self.listeners:
            lst.stop()
        self.jobs.put(None)
        self._check.set()
        self.monitor.stop()
        if self.learner is not None:
            self.learner.stop()
        self.firewalld.stop()
        for t in self._threads:
            t.join(timeout=5)
        log.info("stopped; the rules stay in place")

    def _lock_instance(self) -> None:
        path = self.paths.state_dir / "nwguardd.pid"
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise NwguardError(
                f"another nwguardd (pid {other or '?'}) serves state directory {self.paths.state_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pidfd = fd

    def _install_signals(self) -> int:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        return r

    def _signal_loop(self, wake: int) -> None:
        while True:
            select.select([wake], [], [], 5.0)
            try:
                data = os.read(wake, 64)
            except BlockingIOError:
                continue
            for signum in data:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("%s: stopping", signal.Signals(signum).name)
                    return
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: re-applying every rule")
                    try:
                        self.check("SIGHUP", force=True)
                    except Exception:
                        log.exception("re-apply on SIGHUP failed")

    def _wait_for_monitor(self) -> None:
        """Wait until ``nft monitor`` reports a probe transaction of ours: events from then on
        are seen (a flush right after start-up is not missed)."""
        from nwguard.backends.nft.executor import apply
        from nwguard.backends.nft.render import NftBatch

        probe = NftBatch(({"add": {"table": {"family": "inet", "name": "nwguard_probe"}}},
                          {"delete": {"table": {"family": "inet", "name": "nwguard_probe"}}}))  # fmt: skip
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not self.monitor.synced.is_set():
            if self.monitor.running.is_set():
                try:
                    apply(probe)
                except NwguardError as exc:
                    log.warning("monitor probe failed: %s", exc)
                    return
            self.monitor.synced.wait(0.1)
        if not self.monitor.synced.is_set():
            log.warning("nft monitor did not report in time; relying on periodic checks meanwhile")

    # ---- start-up reconcile ----

    def _follow_backend(self) -> None:
        """At start: the applied state was made on another backend than the one in force
        (``firewall_backend`` changed): move every port and active network, as
        ``backend-switch`` does. Lock held."""
        from nwguard.engine.switch import follow_setting

        try:
            moved = follow_setting(self.ctx)
        except NwguardError as exc:
            log.error("moving the rules to the %s backend failed: %s", self.ctx.backend().name, exc)
            return
        if moved is not None:
            log.info("firewall backend %s -> %s: %d port(s) and network(s) %s moved",
                     moved.old.name, moved.new.name, moved.ports,
                     ", ".join(moved.networks) or "(none)")  # fmt: skip

    def reconcile(self) -> None:
        """Bring the kernel in line with the persisted state (spec: apply-current at start)."""
        with self.op():
            self._follow_backend()
            eng = self.engine()
            try:
                bindings = eng.bindings()
            except NwguardError as exc:
                log.error("cannot read the bindings: %s; re-applying the last state as it is", exc)
                bindings = None
            if bindings is not None:
                gone = sorted(p for p in bindings if not eng.host.port_exists(p))
                self._unbind_all_gone_at_start(gone)
                filters = self.filters()
                eng = self.engine()
                ports = (set(bindings) - set(gone)) | set(eng.applied().ports)
                try:  # one transaction replacing the tables: the kernel may hold anything now
                    _result, skipped = eng.refresh(ports, filters, full_state=True)
                except NwguardError as exc:
                    log.error("recompiling the bound ports failed: %s", exc)
                    skipped = {}
                for port, why in sorted(skipped.items()):
                    log.error("port %s keeps its previous rules: %s", port, why)
                log.info(
                    "%d bound port(s) recompiled, %d removed (port gone)", len(ports), len(gone)
                )
            try:
                started = networks.autostart(self.client)
            except NwguardError as exc:
                log.error("autostart of networks failed: %s", exc)
                started = []
            if started:
                log.info("autostart networks started: %s", ", ".join(started))
        self.check("start")

    def _unbind_all_gone_at_start(self, gone: list[str]) -> None:
        """One transaction for every vanished port; port by port if that is refused."""
        if not gone:
            return
        try:
            self.client.nwfilter_binding_delete_many(gone)
        except NwguardError as exc:
            log.error("removing the bindings of vanished ports at once failed: %s", exc)
            for port in gone:
                self._unbind_gone(port)
            return
        for port in gone:
            log.info("port %s is gone: its binding and rules were removed", port)

    def _unbind_gone(self, port: str) -> None:
        try:
            self.client.nwfilter_binding_delete(port)
        except NwguardError as exc:
            log.error("port %s is gone but its binding could not be removed: %s", port, exc)
            return
        log.info("port %s is gone: its binding and rules were removed", port)

    # ---- keeping the kernel true ----

    def _foreign_change(self, change: mon.Change | str) -> None:
        self.request_check(f"foreign change by {change}", change)

    def request_check(self, reason: str, change: mon.Change | str | None = None) -> None:
        with self._check_lock:
            self._check_reasons.append(reason)
            if isinstance(change, mon.Change) and change.destructive:
                self._broken |= change.tables
        self._check.set()

    def _check_loop(self) -> None:
        self.own.add()
        while not self.stopping.is_set():
            listening = self.monitor.synced.is_set()
            wait = self.opts.check_interval if listening else FALLBACK_CHECK
            if self.ctx.backend().name == "iptables":  # no events: ``nft monitor`` sees none
                wait = IPTABLES_CHECK
            triggered = self._check.wait(wait)
            if self.stopping.is_set():
                return
            if triggered:
                time.sleep(0.005)  # let a burst of events settle into one check
            with self._check_lock:
                reasons, self._check_reasons = self._check_reasons, []
                broken, self._broken = self._broken, set()
                self._check.clear()
            reason = reasons[0] if reasons else "periodic check"
            if len(reasons) > 1:
                reason += f" (+{len(reasons) - 1} more)"
            try:
                self.check(reason, broken=broken or None)
            except Exception:
                log.exception("checking the ruleset failed")

    def _expected(self) -> tuple[NftBatch, mon.Fingerprint, int]:
        """The full batch of the filter tables, rendered, and its fingerprint (lock held;
        kept while the state's generation token stays the same: a restore sends it as it is)."""
        token = state_stamp(self.paths)
        cached = self._expected_cache
        if cached is not None and token is not None and cached[0] == token:
            return cached[1]
        self._expected_cache = None  # the old one's memory first
        state = self.engine().applied()
        batch = to_nft(full(state))
        value = (batch, mon.expected([batch.listed()]), len(state.ports))
        self._expected_cache = (token, value)
        trim_memory()  # the port batch it was rendered from is gone
        return value

    def _check_iptables(self, reason: str, force: bool) -> list[str]:
        """:meth:`check` on the iptables backend: the port chains compared by structure
        (``EbiptablesExecutor.drift``), re-applied whole (one commit per table) when they
        differ; then the active networks' rules (:meth:`_check_iptables_networks`)."""
        t0 = time.monotonic()
        with self.op():
            from nwguard.backends.ebiptables.executor import EbiptablesExecutor

            eng = self.engine()
            executor = eng.executor
            assert isinstance(executor, EbiptablesExecutor)
            problems = executor.drift(lambda: full(eng.applied()))
            if problems or force:
                eng.ensure_ip_hooks()
                executor.apply(full(eng.applied()))
            net_problems = self._check_iptables_networks(force)
        if not problems and not net_problems and not force:
            return []
        problems += net_problems
        took = (time.monotonic() - t0) * 1000
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        log.warning("restored nwguard's iptables rules in %.0f ms after %s; missing or changed: %s%s",
                    took, reason, "; ".join(problems[:5]) or "(forced)", more)  # fmt: skip
        return problems

    def _check_iptables_networks(self, force: bool) -> list[str]:
        """Each active network's rules in libvirt's chains, as started; a table that lacks
        any of them gets them all back in one commit (others' rules kept). Lock held."""
        from nwguard.backends.ebiptables.network import NetworkFirewall, network_rules
        from nwguard.engine.switch import network_firewalls

        fw = NetworkFirewall(self.ctx.backend().variant or "nft")
        problems: list[str] = []
        for name, batch in network_firewalls(self.ctx).items():
            try:
                drift = fw.drift(batch)
                tables = set(network_rules(batch)) if force else set(drift)
                if tables:
                    fw.repair(batch, tables)
            except NwguardError as exc:
                log.error("network %s: checking its iptables rules failed: %s", name, exc)
                continue
            problems += [f"network {name}: {p}" for ps in drift.values() for p in ps]
        return problems

    def check(
        self, reason: str, force: bool = False, broken: set[tuple[str, str]] | None = None
    ) -> list[str]:
        """Make the kernel hold nwguard's state; return what was missing or changed.

        Compares by structure (:mod:`.monitor`) and re-applies the tables that differ; with
        ``force`` all of them; ``broken`` names tables known to be damaged (a foreign delete
        was seen): they are re-applied without looking. A filter-table re-apply is the
        engine's full transaction (deleted and re-created in one batch: no moment without
        filtering); the state files do not change.
        """
        if self.ctx.backend().name == "iptables":
            return self._check_iptables(reason, force)
        from nwguard.backends.nft.executor import apply, run_json_apart

        t0 = time.monotonic()
        with self.op():
            filt, want_filt, nports = self._expected()
            nets = networks.firewall_batches(self.paths)
            t1 = t2 = time.monotonic()
            problems: list[tuple[tuple[str, str], str]] = []
            bad = set(broken or ())
            if not broken:
                want = mon.merged(want_filt, mon.expected(nets.values()))
                # listed by a child nft: libnftables' cache of large tables stays out of here
                have = mon.actual(want.tables, lambda cmd: run_json_apart(cmd, mon.lean))
                problems = mon.compare(want, have)
                t2 = time.monotonic()
                if not problems and not force:
                    trim_memory()
                    log.debug("ruleset as expected (%s; state %.0f ms, kernel %.0f ms)",
                              reason, (t1 - t0) * 1000, (t2 - t1) * 1000)  # fmt: skip
                    return []
                bad = {table for table, _ in problems}
            fixed = []
            if force or bad & want_filt.tables:
                self.engine().ensure_ip_hooks()
                apply(filt)  # rendered once (_expected), sent as it is
                fixed.append(f"{nports} port(s)")
            for table, batch in nets.items():
                if force or ("inet", table) in bad:
                    apply(NftBatch(tuple(batch["nftables"])))
                    fixed.append(f"network table {table}")
        trim_memory()  # libnftables' JSON of a whole ruleset is large and freed at once
        texts = [t for _, t in problems]
        took = (time.monotonic() - t0) * 1000
        detail = f"state {(t1 - t0) * 1000:.0f} ms, kernel {(t2 - t1) * 1000:.0f} ms"
        if problems:
            log.warning("restored nwguard's rules (%s) in %.0f ms (%s) after %s; missing or changed: %s",
                        ", ".join(fixed), took, detail, reason, mon.summarize(texts))  # fmt: skip
        elif broken:
            log.warning("restored nwguard's rules (%s) in %.0f ms after %s",
                        ", ".join(fixed), took, reason)  # fmt: skip
        else:
            log.info("re-applied nwguard's rules (%s) in %.0f ms (%s): %s",
                     ", ".join(fixed), took, detail, reason)  # fmt: skip
        return texts or [f"{t[0]} {t[1]}" for t in sorted(bad)]

    # ---- ports that come and go ----

    def _port_loop(self) -> None:
        self.own.add()
        tick = 0
        while not self.stopping.wait(self.opts.port_interval):
            tick += 1
            try:
                self._check_ports(deep=tick % 5 == 0)
            except Exception:
                log.exception("checking the ports failed")

    def _check_ports(self, deep: bool) -> None:
        names = {name: idx for idx, name in socket.if_nameindex()}
        d = self.paths.binding_dir
        bound = [f[:-4] for f in os.listdir(d) if f.endswith(".xml")] if d.is_dir() else []
        gone = [p for p in bound if p not in names and p not in self._gone_queued]
        if gone:
            self._gone_queued.update(gone)
            self.jobs.put(("ports gone", lambda: self._unbind_all_gone(gone)))
        if self.learner is None:
            return
        # Requests of our own engine arrive in memory (_learning_requested); an embedded
        # nwguard process (NWGUARD_NO_DAEMON=1) that changed the state says so only through
        # the state's generation token.
        stamp = state_stamp(self.paths)
        if stamp != self._learned_stamp:
            self._learned_stamp = stamp
            if stamp != self._stamp:
                self.learner.sync()
        store = LearnedStore(self.paths)
        if deep:
            for port, entry in store.all().items():
                idx = names.get(port)
                if idx is not None and entry.ifindex is not None and idx != entry.ifindex:
                    self.jobs.put(("relearn", functools.partial(self._relearn, port)))

    def _unbind_all_gone(self, ports: list[str]) -> None:
        try:
            with self.op():
                host = self.engine().host
                for port in ports:
                    if (
                        not host.port_exists(port)
                        and (self.paths.binding_dir / f"{port}.xml").exists()
                    ):
                        self._unbind_gone(port)
        finally:
            self._gone_queued.difference_update(ports)

    def _relearn(self, port: str) -> None:
        with self.op():
            log.info("port %s is a new device: its learned addresses are forgotten", port)
            LearnedStore(self.paths).forget(port)
            self._refresh(port)
        self._sync_learner()

    # ---- learning ----

    def _learning_requested(self, req: LearningRequest) -> None:
        """A committed change gave a port the interim rules: watch it (called by the engine,
        lock held). The request is kept in the store too, so a restart serves it again."""
        LearnedStore(self.paths).request(req.port, req.mac, req.mode, req.iface, req.servers)
        if self.learner is not None:
            self.learner.sync()

    def _learning_event(self, port: str, event: LearningEvent) -> None:
        self.jobs.put((f"learning {event.kind} on {port}", lambda: self._learned(port, event)))

    def _learned(self, port: str, event: LearningEvent) -> None:
        store = LearnedStore(self.paths)
        with self.op():
            entry = store.get(port)
            if entry is None or not (self.paths.binding_dir / f"{port}.xml").exists():
                return
            before = tuple(dict.fromkeys(x.ip for x in entry.leases))  # as last compiled
            now = time.time()
            leases = [x for x in entry.leases if x.valid(now)]
            match event:
                case Learned(ip):
                    if entry.mode != "any" or before:
                        return
                    leases = [Lease(ip)]
                case Acked(
                    ip, server, expiry
                ):  # a new lease, or a renewal (in place: the order stays)
                    ips = [x.ip for x in leases]
                    if ip in ips:
                        leases[ips.index(ip)] = Lease(ip, expiry, server)
                    else:
                        leases.append(Lease(ip, expiry, server))
                case Released(ip):
                    leases = [x for x in leases if x.ip != ip]
                case Expired():
                    pass  # the expired leases are gone from ``leases`` already
            entry = entry.with_leases(tuple(leases))
            store.put(entry)
            after = entry.addresses()
            if after != before:
                self._refresh(port)
                log.info("port %s: %s %s; IP now %s", port, event.kind, event.describe(),
                         ", ".join(after) or "unknown (interim rules)")  # fmt: skip
        self._sync_learner()

    def _refresh(self, port: str) -> None:
        """Recompile one port (lock held)."""
        _result, skipped = self.engine().refresh({port}, self.filters())
        if port in skipped:
            log.error(
                "port %s: cannot apply its filter with the learned address: %s", port, skipped[port]
            )

    def _sync_learner(self, wait: bool = False) -> None:
        if self.learner is not None:
            self.learner.sync(wait=wait)

    def _job_loop(self) -> None:
        self.own.add()
        while True:
            job = self.jobs.get()
            if job is None:
                return
            name, fn = job
            try:
                fn()
            except Exception:
                log.exception("%s failed", name)

    # ---- requests ----

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__, "pid": os.getpid(), "started": self.started,
            "config_dir": str(self.paths.config_dir), "state_dir": str(self.paths.state_dir),
            "monitor": self.monitor.running.is_set(),
            "learning": self.learner.watching() if self.learner is not None else None,
            "backend": self.ctx.backend().to_json(),
        }  # fmt: skip

    def registry(self) -> dict[str, tuple[Callable[..., Any], Kind]]:
        """``{method: (function, QUERY | CHANGE)}``: what clients may call (:data:`P.KINDS`).

        The client's facade methods run under the nwguard lock (:meth:`call`); the daemon's
        own two take the lock themselves.
        """
        own: dict[str, Callable[..., Any]] = {
            "daemon.info": self.info,
            "daemon.reapply": self._reapply,
        }
        return {m: (own.get(m) or getattr(self.client, m), kind) for m, kind in P.KINDS.items()}

    def _reapply(self) -> None:
        self.check("requested by a client", force=True)

    def call(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run one registered method; ProtocolError for an unknown one or bad arguments."""
        entry = self.methods.get(method)
        if entry is None:
            raise P.ProtocolError(f"unknown method {method[:80]!r}")
        fn, kind = entry
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise P.ProtocolError(f"bad arguments for {method}: {exc}") from None
        if method.startswith("daemon."):
            return fn(*args, **kwargs)
        with self.op():
            result = fn(*args, **kwargs)
        if kind == CHANGE:
            self._sync_learner(wait=True)
        if isinstance(result, Change):
            # the batch stays here: only a dry run prints it, and a dry run never reaches us
            result = result.replace(batch=None)
        return result

    def handle(self, line: bytes, readonly: bool, peer: tuple[int, int]) -> bytes:
        """One request line → one response line (never raises)."""
        try:
            req_id, method, args, kwargs = P.parse_request(line)
        except P.ProtocolError as exc:
            log.warning("bad request from pid %d uid %d: %s", peer[0], peer[1], exc)
            return P.error_response(getattr(exc, "req_id", None), exc)
        _fn, kind = self.methods.get(method, (None, CHANGE))  # unknown: call() refuses it
        if readonly and kind != QUERY:
            err = PermissionDeniedError(
                f"'{method}' changes state: the read-only socket allows only list, dump, get and "
                f"info requests; use {self.paths.socket} (root)"
            )
            return P.error_response(req_id, err)
        t0 = time.monotonic()
        outcome = "ok"
        try:
            data = P.response(req_id, self.call(method, args, kwargs))
        except NwguardError as exc:
            outcome = f"{exc.code}: {exc}"
            data = P.error_response(req_id, exc)
        except Exception as exc:
            log.exception("%s failed", method)
            outcome = "internal error"
            data = P.error_response(
                req_id, NwguardError(f"internal error in nwguardd: {type(exc).__name__}: {exc}")
            )
        level = logging.DEBUG if kind == QUERY else logging.INFO
        log.log(level, "%s from pid %d uid %d: %s (%.0f ms)", method, peer[0], peer[1], outcome,
                (time.monotonic() - t0) * 1000)  # fmt: skip
        return data


def state_stamp(paths: Any) -> str | None:
    """The engine's generation token: it changes whenever any process saves the state."""
    return generation(paths.state_dir / "applied")


# ----------------------------------------------------------------------------- sockets


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


class Listener:
    """One listening socket (control or read-only) and a thread per connection."""

    def __init__(self, daemon: Daemon, path: Path, readonly: bool) -> None:
        self.daemon, self.path, self.readonly = daemon, path, readonly
        self.sock: socket.socket | None = None
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"nwguardd-{'ro' if readonly else 'rw'}")  # fmt: skip
        self._ino: int | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # ours from a killed run: the instance lock says none is running
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o666 if self.readonly else 0o600)
        self._ino = self.path.stat().st_ino
        sock.listen(64)
        sock.settimeout(0.5)
        self.sock = sock
        self._thread.start()

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._ino:
                self.path.unlink()

    def _accept_loop(self) -> None:
        while not self.daemon.stopping.is_set():
            try:
                conn, _ = self.sock.accept()  # type: ignore[union-attr]
            except TimeoutError:
                continue
            except OSError as exc:
                if self.daemon.stopping.is_set() or exc.errno == errno.EBADF:
                    return
                log.warning("accept on %s failed: %s", self.path, exc)
                time.sleep(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                self._refuse(
                    conn, NwguardError(f"too many clients (over {MAX_CLIENTS}); try again")
                )
                continue
            threading.Thread(
                target=self._serve, args=(conn,), daemon=True, name="nwguardd-client"
            ).start()

    @staticmethod
    def _refuse(conn: socket.socket, exc: NwguardError) -> None:
        with conn:
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.sendall(P.error_response(None, exc))

    def _serve(self, conn: socket.socket) -> None:
        self.daemon.own.add()
        try:
            with conn:
                conn.settimeout(IDLE_TIMEOUT)
                pid, uid, _gid = peer_credentials(conn)
                if not self.readonly and uid != 0:
                    log.warning(
                        "refused a client on the control socket: pid %d uid %d is not root",
                        pid,
                        uid,
                    )
                    conn.sendall(P.error_response(None, PermissionDeniedError(
                        f"the nwguardd control socket is for root only (you are uid {uid}); "
                        f"the read-only socket {self.daemon.paths.socket_ro} answers queries"
                    )))  # fmt: skip
                    return
                self._conversation(conn, (pid, uid))
        except OSError:
            pass  # the client went away; nothing to answer
        finally:
            self._slots.release()

    def _conversation(self, conn: socket.socket, peer: tuple[int, int]) -> None:
        reader = P.LineReader(conn)
        while not self.daemon.stopping.is_set():
            try:
                line = reader.readline()
            except P.LineTooLong as exc:
                log.warning("request from pid %d uid %d too long; connection closed", *peer)
                conn.sendall(P.error_response(None, exc))
                return
            if line is None:
                return
            if not line.strip():
                continue
            reply = self.daemon.handle(line, self.readonly, peer)
            try:
                conn.sendall(reply)
            except OSError:
                log.info("client pid %d left before its answer", peer[0])
                return


# ----------------------------------------------------------------------------- process


def trim_memory() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise): a re-apply of many
    ports makes libnftables parse and free megabytes of JSON at once."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``) about our state; nothing without ``NOTIFY_SOCKET``."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s,
    ):
        s.connect(addr)
        s.sendall(state.encode())


class _Formatter(logging.Formatter):
    """Plain lines; under journald with a syslog priority prefix and no timestamp."""

    PRIO: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self) -> None:
        super().__init__()
        self.journald = bool(os.environ.get("JOURNAL_STREAM"))

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        if self.journald:
            return "\n".join(f"<{self.PRIO.get(record.levelno, 6)}>{ln}" for ln in msg.splitlines())
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{stamp} nwguardd[{record.process}] {record.levelname.lower()}: {msg}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="nwguardd", description="nwguard's daemon: serves the API, "
                                "restores flushed rules, reconciles ports, learns guest addresses.")  # fmt: skip
    p.add_argument(
        "--config-dir",
        help="persistent configuration (default /etc/nwguard; env NWGUARD_CONFIG_DIR)",
    )
    p.add_argument(
        "--state-dir",
        help="runtime state and sockets (default /run/nwguard; env NWGUARD_STATE_DIR)",
    )
    p.add_argument(
        "--check-interval",
        type=float,
        default=30.0,
        help="seconds between structural checks of the ruleset while nft monitor events arrive "
        "(without them: every second)",
    )
    p.add_argument(
        "--port-interval", type=float, default=1.0, help="seconds between checks for vanished ports"
    )
    p.add_argument(
        "--no-learning", dest="learning", action="store_false", help="do not learn IP addresses"
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--version", action="version", version=f"nwguardd {__version__}")
    return p.parse_args(argv, namespace=Options())


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    setup_logging(opts.log_level)
    if os.geteuid() != 0:
        log.error("nwguardd must run as root (it changes the kernel's firewall)")
        sys.exit(1)
    try:
        client = Client.open(opts.config_dir, opts.state_dir)
        sys.exit(Daemon(client, opts).run())
    except NwguardError as exc:
        log.error("%s", exc)
        sys.exit(exc.exit_status)


if __name__ == "__main__":
    main()
