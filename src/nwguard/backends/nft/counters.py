"""Read the drop counters of ``bridge nwguard`` (the ``drops`` set of :mod:`.layout`).

What the packet path stopped since the table was created. A ``drops`` key is ``(iifname,
oifname, chain, index)``: the port is ``iifname`` when ``oifname`` is empty (what the guest
sends: bridge prerouting), else ``oifname``. Bytes are frame bytes, as an interface's
statistics count them: the bridge hooks count from the network header, so the Ethernet
header is added back (14 bytes a packet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nwguard.backends.nft import layout
from nwguard.backends.nft.render import chain_of
from nwguard.errors import ApplyError, StateError
from nwguard.records import ValueRecord

Count = tuple[int, int]  # packets, bytes
DropKey = tuple[str, str, str, int]  # iifname, oifname, chain, rule index in the chain


ETH_HLEN = 14


class RawCounters(ValueRecord):
    """The kernel's counters: per interface, the frames it took from its guest and those it
    gave to it (its own statistics), and per drop key what a rule stopped."""

    from_guest: dict[str, Count]
    to_guest: dict[str, Count]
    drops: dict[DropKey, Count]

    def __hash__(self) -> int:  # dict fields: compared, never hashed
        raise TypeError("RawCounters is not hashable")


def _elements(listing: dict[str, Any]) -> list[tuple[Any, Count]]:
    out = []
    for item in listing.get("nftables", []):
        body = item.get("set")
        if body is None:
            continue
        for e in body.get("elem") or []:
            inner = e.get("elem") if isinstance(e, dict) else None
            if not isinstance(inner, dict):
                continue  # an element without a counter: nothing counted
            c = inner.get("counter") or {}
            out.append((inner.get("val"), (int(c.get("packets", 0)), int(c.get("bytes", 0)))))
    return out


def parse(drops: dict[str, Any]) -> dict[DropKey, Count]:
    """The drop counters from the ``drops`` set's JSON listing."""
    d: dict[DropKey, Count] = {}
    for val, (packets, nbytes) in _elements(drops):
        iif, oif, cid, idx = val["concat"]
        if cid == "00:00:00:00:00:00":
            continue  # the declaration's rule (drops_decl) never runs
        d[(iif, oif, chain_of(cid), int(idx))] = (packets, nbytes + ETH_HLEN * packets)
    return d


def read(list_json: Callable[[str], dict[str, Any]] | None = None) -> dict[DropKey, Count]:
    """The drop counters in the kernel now (``StateError`` when they are not there)."""
    if list_json is None:
        from nwguard.backends.nft.executor import run_json

        list_json = run_json
    try:
        listing = list_json(f"list set {layout.BRIDGE} {layout.TABLE} {layout.DROPS}")
    except ApplyError as exc:
        raise StateError(
            "nwguard's counters are not in the kernel: its tables are missing or older than "
            f"the counters (a binding change re-creates them); {exc}"
        ) from None
    return parse(listing)
