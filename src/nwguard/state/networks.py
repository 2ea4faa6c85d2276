"""The runtime status of virtual networks: what a start did, ``<state>/network/<name>.json``.

A start records each host change before the next one (bridge, firewalld zone, dnsmasq,
sysctls, nft table), so a destroy undoes exactly that, even after the config changed or a
start died halfway. The daemon reads ``state``, ``table`` and ``xml`` to restore a flushed
network table.

Schema version 2. Version 1 (files without ``"version"``, written before nwguard versioned its
files) said "dnsmasq's files are written, its process not started" with ``dnsmasq_pid = -1``;
it is migrated on read, so networks started before an upgrade can still be destroyed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nwguard.state.paths import Paths
from nwguard.state.persist import Format, RecordDir


class NetworkState(enum.Enum):
    STARTING = "starting"  # a start is under way, or died halfway (the next start cleans up)
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    """What a start of network ``name`` did so far.

    >>> s = NetworkStatus("n", "u", "<network/>", "/run/nwguard/network/n", 0.0)
    >>> NetworkStatus.from_json(s.to_json()) == s
    True
    """

    name: str
    uuid: str | None
    xml: str  # the network as started (net-dumpxml while active, teardown decisions)
    dnsmasq_dir: str
    started: float
    state: NetworkState = NetworkState.STARTING
    bridge: str | None = None  # created
    zone: str | None = None  # the firewalld zone the bridge was put in
    dnsmasq_files: bool = False  # dnsmasq's files are written: teardown stops and removes
    dnsmasq_pid: int | None = None  # its process, once started
    table: str | None = None  # the nft table (recorded before the batch is sent)
    sysctls: tuple[tuple[str, str], ...] = field(default=())  # changed keys, their old values

    def __post_init__(self) -> None:
        if self.dnsmasq_pid is not None and (self.dnsmasq_pid <= 0 or not self.dnsmasq_files):
            raise ValueError(f"dnsmasq_pid {self.dnsmasq_pid} without its files")

    @property
    def active(self) -> bool:
        return self.state is NetworkState.ACTIVE

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "uuid": self.uuid, "xml": self.xml, "dnsmasq_dir": self.dnsmasq_dir,
            "started": self.started, "state": self.state.value, "bridge": self.bridge,
            "zone": self.zone, "dnsmasq_files": self.dnsmasq_files,
            "dnsmasq_pid": self.dnsmasq_pid, "table": self.table, "sysctls": dict(self.sysctls),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NetworkStatus:
        pid = d.get("dnsmasq_pid")
        return cls(
            name=str(d["name"]), uuid=d.get("uuid"), xml=str(d["xml"]),
            dnsmasq_dir=str(d["dnsmasq_dir"]), started=float(d["started"]),
            state=NetworkState(d["state"]), bridge=d.get("bridge"), zone=d.get("zone"),
            dnsmasq_files=bool(d.get("dnsmasq_files")), dnsmasq_pid=None if pid is None else int(pid),
            table=d.get("table"),
            sysctls=tuple((str(k), str(v)) for k, v in (d.get("sysctls") or {}).items()),
        )  # fmt: skip


def _from_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1: ``dnsmasq_pid`` None (no dnsmasq), -1 (files only) or the pid."""
    pid = d.get("dnsmasq_pid")
    return {**d, "dnsmasq_files": pid is not None, "dnsmasq_pid": pid if pid and pid > 0 else None}


NETWORK_STATUS = Format(
    "network status", 2, NetworkStatus.from_json, migrations={1: _from_v1}, unversioned=1, indent=2
)


class NetworkStatusStore:
    """The status files of one state directory (written durably, as before versions)."""

    def __init__(self, paths: Paths) -> None:
        self.records = RecordDir(paths.network_state_dir, NETWORK_STATUS, durable=True)

    def path(self, name: str) -> Path:
        return self.records.path(name)

    def get(self, name: str) -> NetworkStatus | None:
        return self.records.get(name)

    def put(self, status: NetworkStatus) -> None:
        self.records.put(status.name, status)

    def remove(self, name: str) -> None:
        self.records.remove(name)

    def names(self) -> set[str]:
        """Networks with a status: active, or a start that died halfway."""
        return set(self.records.keys())
