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
