"""Read the per-port counters of ``bridge nwguard`` (the counter sets of :mod:`.layout`).

Three listings, one per set; what the packet path counted since the table was created. A
``drops`` key is ``(iifname, oifname, chain, index)``: the port is ``iifname`` when
``oifname`` is empty (what the guest sends: bridge prerouting), else ``oifname``.
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


class RawCounters(ValueRecord):
    """The kernel's counters: per interface (as sender, as receiver) and per drop key."""

    seen_out: dict[str, Count]
    seen_in: dict[str, Count]
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


def parse(seen_out: dict[str, Any], seen_in: dict[str, Any], drops: dict[str, Any]) -> RawCounters:
    """The counters from the three sets' JSON listings."""
    d: dict[DropKey, Count] = {}
    for val, count in _elements(drops):
        iif, oif, cid, idx = val["concat"]
        if cid == "00:00:00:00:00:00":
            continue  # the declaration's rule (drops_decl) never runs
        d[(iif, oif, chain_of(cid), int(idx))] = count
    return RawCounters(
        {str(v): c for v, c in _elements(seen_out)},
        {str(v): c for v, c in _elements(seen_in)},
        d,
    )


def read(list_json: Callable[[str], dict[str, Any]] | None = None) -> RawCounters:
    """The counters in the kernel now (``StateError`` when they are not there)."""
    if list_json is None:
        from nwguard.backends.nft.executor import run_json

        list_json = run_json
    try:
        lists = [
            list_json(f"list set {layout.BRIDGE} {layout.TABLE} {name}")
            for name in (layout.SEEN_OUT, layout.SEEN_IN, layout.DROPS)
        ]
    except ApplyError as exc:
        raise StateError(
            "nwguard's counters are not in the kernel: its tables are missing or older than "
            f"the counters (a binding change re-creates them); {exc}"
        ) from None
    return parse(*lists)
