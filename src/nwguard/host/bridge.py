"""Bridges over netlink (pyroute2) and sysctls through ``/proc/sys``.

Everything acts on the network namespace of the calling process. Every failure is a
:class:`~nwguard.errors.HostError` that says which device and what the kernel answered.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from nwguard.errors import HostError
from nwguard.host.netlink import ipr as _ipr
from nwguard.host.netlink import link_index, link_names
from nwguard.model.names import IFNAME

SYSCTL_ROOT = Path("/proc/sys")
IFA_F_NODAD = 0x02
ALIAS_PREFIX = "nwguard network "


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """What to create: name, STP, forward delay (s), MAC, MTU, addresses as ``addr/prefix``."""

    name: str
    stp: bool = True
    delay: int = 0
    mac: str | None = None
    mtu: int | None = None
    addresses: tuple[str, ...] = ()
    owner: str = ""


def _netlink_error(what: str, exc: Exception) -> HostError:
    code = getattr(exc, "code", None)
    text = exc.args[1] if len(getattr(exc, "args", ())) > 1 else str(exc)
    return HostError(f"{what}: {text}" + (f" (errno {code})" if code else ""))


def device_exists(name: str) -> bool:
    """Whether a network device called ``name`` exists in this namespace."""
    with _ipr() as ipr:
        return link_index(ipr, name) is not None


def device_alias(name: str) -> str | None:
    """The ``ifalias`` of device ``name`` (nwguard marks its bridges with it), or None."""
    with _ipr() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            return None
        alias = ipr.get_links(idx)[0].get_attr("IFLA_IFALIAS")
        return str(alias) if alias is not None else None


def device_names() -> set[str]:
    """Names of all network devices in this namespace."""
    with _ipr() as ipr:
        return link_names(ipr)


def create_bridge(spec: BridgeSpec) -> None:
    """Create bridge ``spec.name`` (refusing an existing device), add its addresses, set it up.

    On failure the half-made bridge is removed before the error is raised.
    """
    if not IFNAME.accepts(spec.name):
        raise HostError(f"cannot create bridge '{spec.name}': allowed names: {IFNAME.allowed}")
    if device_exists(spec.name):
        raise HostError(f"cannot create bridge '{spec.name}': a device of that name already exists")
    kw: dict[str, object] = {
        "ifname": spec.name,
        "kind": "bridge",
        "br_forward_delay": spec.delay * 100,
        "br_stp_state": 1 if spec.stp else 0,
    }
    if spec.mac:
        kw["address"] = spec.mac
    if spec.mtu:
        kw["mtu"] = spec.mtu
    with _ipr() as ipr:
        try:
            ipr.link("add", **kw)
        except Exception as exc:  # NetlinkError and friends
            raise _netlink_error(f"cannot create bridge '{spec.name}'", exc) from exc
        try:
            _configure(ipr, spec)
        except BaseException:
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=spec.name)
            raise


def _configure(ipr: Any, spec: BridgeSpec) -> None:
    idx = link_index(ipr, spec.name)
    if idx is None:
        raise HostError(f"bridge '{spec.name}' vanished right after it was created")
    try:
        if spec.owner:
            ipr.link("set", index=idx, ifalias=ALIAS_PREFIX + spec.owner)
        if not any(":" in a for a in spec.addresses):
            set_sysctl(f"net/ipv6/conf/{spec.name}/disable_ipv6", "1")
        else:
            set_sysctl(f"net/ipv6/conf/{spec.name}/accept_ra", "0")
            set_sysctl(f"net/ipv6/conf/{spec.name}/autoconf", "0")
        for text in spec.addresses:
            _add_address(ipr, idx, spec.name, text)
        ipr.link("set", index=idx, state="up")
    except HostError:
        raise
    except Exception as exc:
        raise _netlink_error(f"cannot configure bridge '{spec.name}'", exc) from exc


def _add_address(ipr: Any, idx: int, name: str, text: str) -> None:
    iface = ip_interface(text)
    kw: dict[str, object] = {
        "index": idx,
        "address": str(iface.ip),
        "prefixlen": iface.network.prefixlen,
    }
    if iface.version == 4:
        kw["broadcast"] = str(iface.network.broadcast_address)
    else:
        kw["flags"] = IFA_F_NODAD  # no DAD on a bridge without ports: dnsmasq binds at once
    try:
        ipr.addr("add", **kw)
    except Exception as exc:
        raise _netlink_error(f"cannot add address {text} to bridge '{name}'", exc) from exc


def delete_bridge(name: str) -> bool:
    """Delete device ``name`` if it exists; return whether it did."""
    with _ipr() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except Exception as exc:
            raise _netlink_error(f"cannot delete bridge '{name}'", exc) from exc
    return True


def routes_overlapping(subnets: list[str], ignore_dev: str) -> list[tuple[str, str]]:
    """Routes of this namespace whose destination overlaps one of ``subnets``.

    Returns ``(route, device)`` pairs, ignoring routes through ``ignore_dev`` and the default
    route, like libvirt's check that a network's subnet is not already in use.
    """
    from ipaddress import ip_network

    nets = [ip_network(s, strict=False) for s in subnets]
    found = []
    with _ipr() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for fam in (2, 10):
            for r in ipr.get_routes(family=fam, table=254):
                dst, plen = r.get_attr("RTA_DST"), r["dst_len"]
                dev = names.get(r.get_attr("RTA_OIF"), "?")
                if dst is None or plen == 0 or dev == ignore_dev:
                    continue
                rnet = ip_network(f"{dst}/{plen}", strict=False)
                if any(rnet.version == n.version and rnet.overlaps(n) for n in nets):
                    found.append((str(rnet), dev))
    return found


# ----------------------------------------------------------------------------- sysctl


def _sysctl_path(key: str) -> Path:
    if ".." in key.split("/") or key.startswith("/"):
        raise HostError(f"invalid sysctl key '{key}'")
    return SYSCTL_ROOT / key


def get_sysctl(key: str) -> str | None:
    """The value of ``/proc/sys/<key>`` (``None`` if it does not exist)."""
    try:
        return _sysctl_path(key).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostError(f"cannot read sysctl {key}: {exc.strerror}") from exc


def set_sysctl(key: str, value: str) -> str | None:
    """Write ``value`` to ``/proc/sys/<key>``; return the previous value."""
    old = get_sysctl(key)
    if old == value:
        return old
    try:
        _sysctl_path(key).write_text(value + "\n")
    except OSError as exc:
        raise HostError(f"cannot set sysctl {key}={value}: {exc.strerror}") from exc
    return old
