"""The one way nwguard opens a netlink handle, and the lookups every caller needs.

pyroute2 has no type information, so a handle is ``Any``; it is imported when first used, so
commands that never touch a device do not pay for importing it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def ipr() -> Iterator[Any]:
    """An ``IPRoute`` handle on the calling process's network namespace, closed on exit."""
    from pyroute2 import IPRoute

    handle = IPRoute()
    try:
        yield handle
    finally:
        handle.close()


def link_index(handle: Any, name: str) -> int | None:
    """The index of device ``name``, or None if there is none."""
    found = handle.link_lookup(ifname=name)
    return int(found[0]) if found else None


def link_names(handle: Any) -> set[str]:
    """Names of all network devices."""
    return {str(link.get_attr("IFLA_IFNAME")) for link in handle.get_links()}


LinkCounts = tuple[int, int, int, int]  # packets, bytes received; packets, bytes sent


def link_counters(handle: Any, names: set[str] | None = None) -> dict[str, LinkCounts]:
    """Per device (of ``names``, default all): the packets and bytes it received and sent,
    from its 64-bit statistics."""
    out: dict[str, LinkCounts] = {}
    for link in handle.get_links():
        name = str(link.get_attr("IFLA_IFNAME"))
        if names is not None and name not in names:
            continue
        st = link.get_attr("IFLA_STATS64")
        if st is None:
            continue
        out[name] = (st["rx_packets"], st["rx_bytes"], st["tx_packets"], st["tx_bytes"])
    return out
