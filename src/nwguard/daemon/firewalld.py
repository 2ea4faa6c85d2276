"""Following firewalld: after its ``Reloaded`` signal or a restart (its bus name changes
owner), every active network's bridge goes back into its zone and nwguard's rules are
checked (compared, re-applied only where they differ: no rebuild when nothing changed).

firewalld 1.3 drops runtime zone assignments on a reload, and a restart always does; a
bridge left in firewalld's default zone cuts its guests off DHCP, DNS and forwarding, so the
zones are compared after every such event (and when the watcher starts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from nwguard.errors import NwguardError
from nwguard.host import firewalld
from nwguard.state.networks import NetworkStatusStore
from nwguard.state.paths import Paths

log = logging.getLogger("nwguardd.firewalld")


def rezone(paths: Paths, fw: firewalld.Firewalld) -> list[str]:
    """Put every active network's bridge back into the zone its start chose; return the
    bridges that had to be re-added (``bridge→zone``)."""
    if not fw.running():
        return []
    readded = []
    for status in NetworkStatusStore(paths).records.items(on_error=lambda *_: None).values():
        if not status.active or not status.zone or not status.bridge:
            continue
        try:
            if fw.zone_of_interface(status.bridge) == status.zone:
                continue
            fw.add_interface(status.zone, status.bridge)
        except NwguardError as exc:
            log.error("network %s: cannot put bridge %s back into firewalld zone %s: %s",
                      status.name, status.bridge, status.zone, exc)  # fmt: skip
            continue
        readded.append(f"{status.bridge}→{status.zone}")
    return readded


class FirewalldWatcher:
    """A thread that hears firewalld and calls :func:`rezone` then ``request_check``.

    ``op`` is the daemon's lock (held around rezone), ``fw`` gives the firewalld client.
    """

    def __init__(
        self,
        paths: Paths,
        fw: Callable[[], firewalld.Firewalld],
        op: Callable[[], AbstractContextManager[Any]],
        request_check: Callable[[str], None],
        address: str | None = None,
    ) -> None:
        self.paths, self._fw, self._op, self._request_check = paths, fw, op, request_check
        self.address = address
        self.stop_event = threading.Event()
        self.events = 0  # handled, for tests and info
        self._thread = threading.Thread(target=self._run, name="nwguardd-firewalld", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        firewalld.follow(self.stop_event, self.handle, address=self.address)

    def handle(self, event: str) -> None:
        if event == "stopped":
            log.info("firewalld stopped")
            return
        t0 = time.monotonic()
        with self._op():
            readded = rezone(self.paths, self._fw())
        self.events += 1
        if event == "connected" and not readded:
            return  # the watcher's own start: nothing was out of place
        log.warning("firewalld %s: %s in %.0f ms", event,
                    "re-added " + ", ".join(readded) if readded else "every bridge in its zone",
                    (time.monotonic() - t0) * 1000)  # fmt: skip
        self._request_check(f"firewalld {event}")
