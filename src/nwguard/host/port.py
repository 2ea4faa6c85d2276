"""Guest ports on the host: create a tap or a veth pair, plug it into a bridge, remove it.

Over netlink with pyroute2; no shelling out.
"""

from __future__ import annotations

import contextlib

from nwguard.errors import HostError
from nwguard.host.netlink import ipr as _ipr
from nwguard.host.netlink import link_index as _index
from nwguard.host.netlink import link_names
from nwguard.model.names import IFNAME


def exists(name: str) -> bool:
    with _ipr() as ipr:
        return _index(ipr, name) is not None


def free_name(prefix: str = "vnet") -> str:
    """The first ``vnetN`` not in use (as libvirt names taps)."""
    with _ipr() as ipr:
        used = link_names(ipr)
    n = 0
    while f"{prefix}{n}" in used:
        n += 1
    return f"{prefix}{n}"


def create(name: str, mac: str | None, veth_peer: str | None = None) -> None:
    """Create a tap (or a veth pair whose peer the caller moves into its guest).

    The host side gets the guest's MAC with 0xfe as first byte, as libvirt does for taps, so
    the bridge never takes the guest's own address as its port address.
    """
    for dev in (name, veth_peer) if veth_peer else (name,):
        if not IFNAME.accepts(dev):
            raise HostError(f"cannot create port {dev}: allowed names: {IFNAME.allowed}")
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
