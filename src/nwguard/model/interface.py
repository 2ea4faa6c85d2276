"""A guest's network interface, the part of libvirt's domain ``<interface>`` nwguard uses."""

from __future__ import annotations

from dataclasses import dataclass

from nwguard.model.filter import FilterRef


@dataclass(frozen=True, slots=True)
class Interface:
    type: str  # "bridge", "network" or "ethernet"
    mac: str | None = None
    source_bridge: str | None = None
    source_network: str | None = None
    target_dev: str | None = None
    ips: tuple[tuple[str, int | None], ...] = ()  # (address, prefix)
    filterref: FilterRef | None = None
