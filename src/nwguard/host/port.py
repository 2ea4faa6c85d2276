"""Guest ports on the host: create a tap or a veth pair, plug it into a bridge, remove it.

Over netlink with pyroute2; no shelling out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from nwguard.errors import HostError


@contextlib.contextmanager
def _ipr() -> Iterator[Any]:
    from pyroute2 import IPRoute

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def exists(name: str) -> bool:
    with _ipr() as ipr:
        return _index(ipr, name) is not None


def free_name(prefix: str = "vnet") -> str:
    """The first ``vnetN`` not in use (as libvirt names taps)."""
    with _ipr() as ipr:
        used = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    n = 0
    while f"{prefix}{n}" in used:
        n += 1
    return f"{prefix}{n}"


def create(name: str, mac: str | None, veth_peer: str | None = None) -> None:
    """Create a tap (or a veth pair whose peer the caller moves into its guest).

    The host side gets the guest's MAC with 0xfe as first byte, as libvirt does for taps, so
    the bridge never takes the guest's own address as its port address.
    """
    try:
        with _ipr() as ipr:
            if veth_peer:
                ipr.link("add", ifname=name, kind="veth", peer={"ifname": veth_peer})
            else:
                ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            if mac:
                idx = _index(ipr, name)
                ipr.link("set", index=idx, address="fe" + mac[2:])
    except Exception as exc:  # pyroute2 raises NetlinkError and OSError
        raise HostError(f"cannot create port {name}: {exc}") from exc


def plug(name: str, bridge: str) -> None:
    """Enslave ``name`` to ``bridge`` and bring it up."""
    try:
        with _ipr() as ipr:
            br, idx = _index(ipr, bridge), _index(ipr, name)
            if br is None:
                raise HostError(f"bridge {bridge} does not exist")
            if idx is None:
                raise HostError(f"port {name} does not exist")
            ipr.link("set", index=idx, master=br)
            ipr.link("set", index=idx, state="up")
    except HostError:
        raise
    except Exception as exc:
        raise HostError(f"cannot plug {name} into {bridge}: {exc}") from exc


def remove(name: str) -> None:
    """Delete the port (a veth takes its peer with it); no error if it is already gone."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is not None:
            with contextlib.suppress(Exception):
                ipr.link("del", index=idx)
