"""The daemon's view of virtual networks: their firewall tables and autostart.

Networks are the Client's ``net_*`` operations (``ops_network``); the daemon calls only its
public methods, plus two reads documented there: the runtime status file of an active
network (``<state>/network/<name>.json``: ``state``, ``table``, ``xml``) and
:func:`nwguard.netfw.network_batch`, the one transaction that (re)creates a network's table.
With them a flushed network table is restored like the filter tables.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from nwguard.backends.nft.render import nft_json
from nwguard.state.paths import Paths

log = logging.getLogger("nwguardd.networks")


def firewall_batches(paths: Paths) -> dict[str, dict[str, Any]]:
    """``{table: batch}`` of every active network that has a firewall table."""
    d = paths.network_state_dir
    if not d.is_dir():
        return {}
    try:
        from nwguard.compile.network import network_batch
        from nwguard.xmlio.network_xml import parse_network
    except ImportError:  # pragma: no cover - networks not built
        return {}
    out = {}
    for f in sorted(d.glob("*.json")):
        try:
            status = json.loads(f.read_bytes())
        except (OSError, ValueError):
            continue
        if status.get("state") != "active" or not status.get("table") or not status.get("xml"):
            continue
        try:
            batch = nft_json(network_batch(parse_network(status["xml"])))
        except Exception as exc:  # noqa: BLE001 - one bad network must not stop the others
            log.error("network %s: cannot rebuild its firewall: %s", status.get("name"), exc)
            continue
        if batch.get("nftables"):
            out[status["table"]] = batch
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
