"""The daemon's view of virtual networks: their firewall tables and autostart.

Networks are the Client's ``net_*`` operations (``ops_network``); the daemon calls only its
public methods, plus two reads: the runtime status of an active network
(:class:`~nwguard.state.networks.NetworkStatus`: ``state``, ``table``, ``xml``) and
:func:`nwguard.compile.network.network_batch`, the one transaction that (re)creates a
network's table.
With them a flushed network table is restored like the filter tables.
"""

from __future__ import annotations

import logging
from typing import Any

from nwguard.backends.nft.render import nft_json
from nwguard.state.networks import NetworkStatusStore
from nwguard.state.paths import Paths
from nwguard.state.persist import StateError

log = logging.getLogger("nwguardd.networks")


def firewall_batches(paths: Paths) -> dict[str, dict[str, Any]]:
    """``{table: batch}`` of every active network that has a firewall table."""
    try:
        from nwguard.compile.network import network_batch
        from nwguard.xmlio.network_xml import parse_network
    except ImportError:  # pragma: no cover - networks not built
        return {}

    def unreadable(name: str, exc: StateError) -> None:
        log.error("network %s: cannot read its status: %s", name, exc)

    out = {}
    for status in NetworkStatusStore(paths).records.items(on_error=unreadable).values():
        if not status.active or not status.table or not status.xml:
            continue
        try:
            batch = nft_json(network_batch(parse_network(status.xml)))
        except Exception as exc:  # noqa: BLE001 - one bad network must not stop the others
            log.error("network %s: cannot rebuild its firewall: %s", status.name, exc)
            continue
        if batch.get("nftables"):
            out[status.table] = batch
    return out


def autostart(client: Any) -> list[str]:
    """Start the autostart networks that are not active; return the names started."""
    if not hasattr(client, "net_list") or not hasattr(client, "net_start"):
        return []
    started = []
    for rec in client.net_list(all=True):
        if not rec.autostart or rec.state == "active":
            continue
        try:
            client.net_start(rec.name)
        except Exception as exc:  # noqa: BLE001 - log and go on with the next network
            log.error("autostart of network %s failed: %s", rec.name, exc)
            continue
        log.info("network %s started (autostart)", rec.name)
        started.append(rec.name)
    return started
