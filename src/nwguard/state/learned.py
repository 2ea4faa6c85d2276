"""Learned IPv4 addresses of ports (libvirt's "IP address map"), one file per port.

``<state>/learned/<portdev>.json`` holds a port's learning request and what was learned::

    {"version": 1, "port": "vnet0", "mac": "52:54:00:..", "mode": "any" | "dhcp", "iface": "vnet0",
     "servers": ["192.0.2.1"], "ifindex": 7,
     "leases": [{"ip": "192.0.2.50", "expiry": 1700000000.0 | null, "server": ".." | null}]}

The engine writes the request when it has to give a port the interim learning rules (its
filter needs ``$IP``, the binding gives none, nothing was learned yet); ``nwguardd`` serves the
request (sniffs the port), adds leases and recompiles the port. The engine adds the unexpired
addresses to the port's parameters as ``IP`` (spec §3 step 3).

Decisions, where libvirt differs:

* Learned addresses survive a daemon restart (libvirt keeps its map in memory and relearns;
  its DHCP leases survive in a lease file). They are tied to the port's interface index: a
  new device under the same name (a guest restarted) starts learning from scratch.
* A binding's delete forgets the port's file (libvirt: "forgets learned addresses").

Writers hold the nwguard lock (``Context.lock``). The files are :mod:`nwguard.state.persist`
documents; those written before versions existed are version 1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nwguard.records import ValueRecord
from nwguard.state.paths import Paths
from nwguard.state.persist import Format, RecordDir, SchemaVersionError, StateError


class Lease(ValueRecord):
    """One learned address; ``expiry`` (epoch seconds) None means it never expires."""

    ip: str
    expiry: float | None = None
    server: str | None = None

    def valid(self, now: float) -> bool:
        return self.expiry is None or self.expiry > now

    def to_json(self) -> dict[str, Any]:
        return {"ip": self.ip, "expiry": self.expiry, "server": self.server}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lease:
        return cls(str(d["ip"]), _opt_float(d.get("expiry")), d.get("server"))


class Learning(ValueRecord):
    """A port's learning request and its leases."""

    port: str
    mac: str
    mode: str  # "any" or "dhcp"
    iface: str  # where to capture: linkdev if the binding has one, else the port
    servers: tuple[str, ...] = ()
    ifindex: int | None = None
    leases: tuple[Lease, ...] = ()

    def addresses(self, now: float | None = None) -> tuple[str, ...]:
        now = time.time() if now is None else now
        out: list[str] = []
        for lease in self.leases:
            if lease.valid(now) and lease.ip not in out:
                out.append(lease.ip)
        return tuple(out)

    def with_leases(self, leases: tuple[Lease, ...]) -> Learning:
        new: Learning = self.replace(leases=leases)
        return new

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port, "mac": self.mac, "mode": self.mode, "iface": self.iface,
            "servers": list(self.servers), "ifindex": self.ifindex,
            "leases": [lease.to_json() for lease in self.leases],
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Learning:
        if d["mode"] not in ("any", "dhcp"):
            raise ValueError(f"unknown learning mode {d['mode']!r}")
        return cls(
            port=d["port"], mac=d["mac"], mode=d["mode"], iface=d.get("iface") or d["port"],
            servers=tuple(d.get("servers") or ()), ifindex=d.get("ifindex"),
            leases=tuple(Lease.from_json(x) for x in d.get("leases") or ()),
        )  # fmt: skip


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


# Version 1 is the layout of the files written before versions existed.
LEARNING = Format("learned-address", 1, Learning.from_json, unversioned=1)


def ifindex(name: str) -> int | None:
    """The interface index of ``name`` in this network namespace, or None."""
    import socket  # 2 ms to import, only where an index is needed

    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


class LearnedStore:
    """The ``learned/`` directory of one state directory."""

    def __init__(self, paths: Paths) -> None:
        self.records = RecordDir(paths.state_dir / "learned", LEARNING)
        self.dir = self.records.dir

    def path(self, port: str) -> Path:
        return self.records.path(port)

    def get(self, port: str) -> Learning | None:
        """The port's entry; None if there is none or it is damaged (learn again).

        A file of another schema version is an error (SchemaVersionError): it is not ours
        to overwrite.
        """
        try:
            return self.records.get(port)
        except SchemaVersionError:
            raise
        except StateError:
            return None

    def put(self, entry: Learning) -> None:
        self.records.put(entry.port, entry)

    def forget(self, port: str) -> None:
        self.records.remove(port)

    def ports(self) -> list[str]:
        return self.records.keys()

    def all(self) -> dict[str, Learning]:
        out = {}
        for port in self.ports():
            entry = self.get(port)
            if entry is not None:
                out[port] = entry
        return out

    def current(self, port: str, mac: str) -> Learning | None:
        """The port's entry if it belongs to this guest (same MAC) on the same device."""
        entry = self.get(port)
        if entry is None or entry.mac != mac:
            return None
        if entry.ifindex is not None and ifindex(port) not in (None, entry.ifindex):
            return None
        return entry

    def request(
        self, port: str, mac: str, mode: str, iface: str, servers: tuple[str, ...]
    ) -> Learning:
        """Record that ``port`` waits for learning; keeps leases of the same guest and device."""
        old = self.current(port, mac)
        entry = Learning(port, mac, mode, iface, servers, ifindex(port),
                         old.leases if old is not None and old.mode == mode else ())  # fmt: skip
        if entry != old:
            self.put(entry)
        return entry
