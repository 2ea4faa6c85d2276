"""firewalld zones for network bridges, as libvirt does (seed: "firewalld and the virtual
network driver").

Talks to firewalld through ``firewall-cmd`` (argument lists, no shell); runtime changes only,
so a bridge leaves its zone when the network stops or the host reboots.
"""

from __future__ import annotations

import shutil
import subprocess

from nwguard.errors import HostError

FIREWALL_CMD = "firewall-cmd"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(FIREWALL_CMD)
    if exe is None:
        raise HostError("firewall-cmd is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, check=False)


def running() -> bool:
    """Whether firewalld is active (``firewall-cmd --state`` exits 0)."""
    if shutil.which(FIREWALL_CMD) is None:
        return False
    return _run("--state").returncode == 0


def _words(*args: str) -> set[str]:
    r = _run(*args)
    return set(r.stdout.split()) if r.returncode == 0 else set()


def choose_zone(name: str, mode: str, requested: str | None) -> str | None:
    """The zone for a network's bridge, or None when firewalld has no say (libvirt's rules).

    An explicit ``<bridge zone=>`` needs firewalld; otherwise a routed network goes into
    ``libvirt-routed`` when firewalld has it, every other non-open network into ``libvirt``.
    """
    active = running()
    if requested:
        if not active:
            raise HostError(
                f"zone {requested} requested for network {name} but firewalld is not active"
            )
        return requested
    if mode == "open" or not active:
        return None
    zones = _words("--get-zones")
    if (
        mode == "route"
        and "libvirt-routed" in zones
        and "libvirt-routed-out" in _words("--get-policies")
    ):
        return "libvirt-routed"
    if "libvirt" in zones:
        return "libvirt"
    raise HostError(
        "firewalld can't find the 'libvirt' zone that should have been installed with libvirt"
    )


def set_zone(bridge: str, zone: str) -> None:
    r = _run(f"--zone={zone}", f"--change-interface={bridge}")
    if r.returncode != 0:
        raise HostError(
            f"firewalld refused to put {bridge} into zone {zone}: {r.stderr.strip() or r.stdout.strip()}"
        )


def remove_zone(bridge: str, zone: str) -> None:
    r = _run(f"--zone={zone}", f"--remove-interface={bridge}")
    if r.returncode != 0 and running():
        raise HostError(
            f"firewalld refused to take {bridge} out of zone {zone}: {r.stderr.strip()}"
        )
