"""firewalld zones for network bridges, as libvirt does (spec network-firewall §6).

firewalld is reached over D-Bus with jeepney (pure Python, blocking I/O that fits nwguard's
threads; no firewall-cmd subprocesses, no parsing of its words). Runtime changes only, so a
bridge leaves its zone when the network stops or firewalld restarts (nwguardd puts it back).

:class:`Firewalld` is the small interface the engine and the daemon use; :class:`DBusFirewalld`
talks to the real one (on the bus named by ``NWGUARD_FIREWALLD_BUS``, else the system bus),
:class:`RecordingFirewalld` is the in-memory stand-in for unit tests.
"""

from __future__ import annotations

import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from nwguard.errors import (
    ConflictError,
    HostError,
    NotFoundError,
    NwguardError,
    PermissionDeniedError,
)

log = logging.getLogger("nwguard.firewalld")

BUS_ENV = "NWGUARD_FIREWALLD_BUS"  # a D-Bus address (unix:path=...); unset: the system bus
NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
CONFIG_PATH = PATH + "/config"
ZONE_IFACE = NAME + ".zone"
POLICY_IFACE = NAME + ".policy"
CONFIG_IFACE = NAME + ".config"
CALL_TIMEOUT = 10.0  # firewalld answers queued calls only once its start-up is done

LIBVIRT_ZONE, ROUTED_ZONE, ROUTED_OUT_POLICY = "libvirt", "libvirt-routed", "libvirt-routed-out"


class Firewalld(Protocol):
    """What nwguard asks of firewalld."""

    def running(self) -> bool: ...
    def version(self) -> str: ...
    def backend(self) -> str: ...  # "nftables" or "iptables"
    def zones(self) -> frozenset[str]: ...
    def policies(self) -> frozenset[str]: ...
    def zone_of_interface(self, interface: str) -> str | None: ...
    def add_interface(self, zone: str, interface: str) -> None: ...
    def remove_interface(self, zone: str, interface: str) -> bool: ...  # False: was not in it
    def reload(self) -> None: ...


# firewalld's error words (the start of its exception text) -> nwguard's error classes
_CODES: dict[str, type[NwguardError]] = {
    "INVALID_ZONE": NotFoundError,
    "INVALID_INTERFACE": HostError,
    "ZONE_CONFLICT": ConflictError,
    "NOT_AUTHORIZED": PermissionDeniedError,
}
_NOT_IN_ZONE = {"UNKNOWN_INTERFACE", "NOT_ENABLED", "INVALID_ZONE"}


def bus_address() -> str:
    return os.environ.get(BUS_ENV) or "SYSTEM"


class FirewalldCallError(HostError):
    """firewalld answered a call with an error; ``word`` is its code (INVALID_ZONE …)."""

    def __init__(self, message: str, word: str, dbus_name: str) -> None:
        super().__init__(message)
        self.word, self.dbus_name = word, dbus_name


def _error(what: str, exc: Any) -> NwguardError:
    """A D-Bus error reply as an nwguard error (the class by firewalld's error word)."""
    name = str(exc.name or "")
    text = str(exc.data[0]) if exc.data else name
    word = text.split(":", 1)[0].strip()
    if name.endswith(("NotAuthorizedException", "AccessDenied")):
        word = "NOT_AUTHORIZED"
    cls = _CODES.get(word)
    msg = f"firewalld refused to {what}: {text}"
    if cls is None or cls is HostError:
        return FirewalldCallError(msg, word, name)
    return cls(msg)


class DBusFirewalld:
    """firewalld over D-Bus (one connection, opened on first use, reopened after a failure)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or bus_address()
        self._conn: Any = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> Any:
        from jeepney.io.blocking import open_dbus_connection

        if self._conn is None:
            try:
                self._conn = open_dbus_connection(bus=self.address)
            except (OSError, ValueError, KeyError) as exc:
                raise HostError(f"cannot reach the D-Bus bus {self.address}: {exc}") from exc
        return self._conn

    def _call(self, what: str, msg: Any) -> tuple[Any, ...]:
        from jeepney import DBusErrorResponse, MessageType
        from jeepney.low_level import MessageFlag

        msg.header.flags |= MessageFlag.no_auto_start  # never start firewalld by asking
        with self._lock:
            try:
                reply = self._connection().send_and_get_reply(msg, timeout=CALL_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise HostError(f"firewalld did not answer ({what}): {exc}") from exc
        if reply.header.message_type is MessageType.error:
            raise _error(what, DBusErrorResponse(reply))
        return tuple(reply.body)

    def _method(
        self, what: str, path: str, iface: str, method: str, sig: str = "", *args: Any
    ) -> Any:
        from jeepney import DBusAddress, new_method_call

        addr = DBusAddress(path, bus_name=NAME, interface=iface)
        body = self._call(what, new_method_call(addr, method, sig or None, args))
        return body[0] if body else None

    def _property(self, path: str, iface: str, name: str) -> Any:
        from jeepney import DBusAddress, Properties

        addr = DBusAddress(path, bus_name=NAME, interface=iface)
        (_sig, value), *_ = self._call(f"read {name}", Properties(addr).get(name))
        return value

    def running(self) -> bool:
        from jeepney import message_bus

        try:
            (owned,) = self._call("ask the bus", message_bus.NameHasOwner(NAME))
        except HostError:
            return False  # no bus: no firewalld either
        return bool(owned)

    def version(self) -> str:
        return str(self._property(PATH, NAME, "version"))

    def backend(self) -> str:
        try:
            return str(self._property(CONFIG_PATH, CONFIG_IFACE, "FirewallBackend"))
        except FirewalldCallError:
            return "iptables"  # older firewalld has no such property: iptables only

    def zones(self) -> frozenset[str]:
        return frozenset(self._method("list its zones", PATH, ZONE_IFACE, "getZones"))

    def policies(self) -> frozenset[str]:
        try:
            return frozenset(self._method("list its policies", PATH, POLICY_IFACE, "getPolicies"))
        except FirewalldCallError as exc:
            if "UnknownMethod" in exc.dbus_name or "UnknownInterface" in exc.dbus_name:
                return frozenset()  # firewalld < 0.9: no policy objects
            raise

    def zone_of_interface(self, interface: str) -> str | None:
        return (
            str(
                self._method(
                    f"name the zone of {interface}",
                    PATH,
                    ZONE_IFACE,
                    "getZoneOfInterface",
                    "s",
                    interface,
                )
            )
            or None
        )

    def add_interface(self, zone: str, interface: str) -> None:
        try:
            self._method(
                f"put {interface} into zone {zone}", PATH, ZONE_IFACE, "changeZoneOfInterface",
                "ss", zone, interface,
            )  # fmt: skip
        except FirewalldCallError as exc:
            if exc.word != "ZONE_ALREADY_SET":
                raise

    def remove_interface(self, zone: str, interface: str) -> bool:
        try:
            self._method(
                f"take {interface} out of zone {zone}", PATH, ZONE_IFACE, "removeInterface",
                "ss", zone, interface,
            )  # fmt: skip
        except (FirewalldCallError, NotFoundError) as exc:
            if isinstance(exc, NotFoundError) or exc.word in _NOT_IN_ZONE:
                return False
            raise
        return True

    def reload(self) -> None:
        self._method("reload", PATH, NAME, "reload")


class RecordingFirewalld:
    """An in-memory firewalld for unit tests: records every call in ``calls``."""

    def __init__(
        self,
        zones: tuple[str, ...] = ("public", "trusted", LIBVIRT_ZONE),
        policies: tuple[str, ...] = (),
        backend: str = "nftables",
        version: str = "1.3.3",
        active: bool = True,
    ) -> None:
        self.zone_names, self.policy_names = set(zones), set(policies)
        self.backend_name, self.version_text, self.active = backend, version, active
        self.members: dict[str, str] = {}  # interface -> zone
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def _need(self) -> None:
        if not self.active:
            raise HostError("firewalld did not answer: not running")

    def running(self) -> bool:
        return self.active

    def version(self) -> str:
        self._need()
        return self.version_text

    def backend(self) -> str:
        self._need()
        return self.backend_name

    def zones(self) -> frozenset[str]:
        self._need()
        return frozenset(self.zone_names)

    def policies(self) -> frozenset[str]:
        self._need()
        return frozenset(self.policy_names)

    def zone_of_interface(self, interface: str) -> str | None:
        self._need()
        return self.members.get(interface)

    def add_interface(self, zone: str, interface: str) -> None:
        self._need()
        self.calls.append(("add_interface", (zone, interface)))
        if zone not in self.zone_names:
            raise NotFoundError(
                f"firewalld refused to put {interface} into zone {zone}: INVALID_ZONE: {zone}"
            )
        self.members[interface] = zone

    def remove_interface(self, zone: str, interface: str) -> bool:
        self._need()
        self.calls.append(("remove_interface", (zone, interface)))
        if self.members.get(interface) != zone:
            return False
        del self.members[interface]
        return True

    def reload(self) -> None:
        self._need()
        self.calls.append(("reload", ()))

    def restart(self) -> None:
        """What a firewalld restart does to runtime state: every interface leaves its zone."""
        self.members.clear()


_default: Firewalld | None = None


def default() -> Firewalld:
    """The process's firewalld client (on the bus of ``NWGUARD_FIREWALLD_BUS`` at first use)."""
    global _default
    if _default is None:
        _default = DBusFirewalld()
    return _default


# ---------------------------------------------------------------------- zone selection


def running(fw: Firewalld | None = None) -> bool:
    """Whether firewalld is active (its D-Bus name has an owner)."""
    return (fw or default()).running()


def choose_zone(
    name: str, mode: str, requested: str | None, fw: Firewalld | None = None
) -> str | None:
    """The zone for a network's bridge, or None when firewalld has no say.

    An explicit ``<bridge zone=>`` needs firewalld and an existing zone; otherwise a routed
    network goes into ``libvirt-routed`` when firewalld has it (and its policy), every other
    non-open network into ``libvirt``. Without that zone the start is refused with either
    firewalld backend (newest libvirt's rule; older libvirt only warned with iptables, where
    its own iptables rules came first: nwguard's are nftables tables and cannot).
    """
    fw = fw or default()
    active = fw.running()
    if requested:
        if not active:
            raise HostError(
                f"zone {requested} requested for network {name} but firewalld is not active"
            )
        if requested not in fw.zones():
            raise NotFoundError(
                f"zone {requested} requested for network {name} does not exist in firewalld"
            )
        return requested
    if mode == "open" or not active:
        return None
    zones = fw.zones()
    if mode == "route" and ROUTED_ZONE in zones and ROUTED_OUT_POLICY in fw.policies():
        return ROUTED_ZONE
    if LIBVIRT_ZONE in zones:
        return LIBVIRT_ZONE
    backend = fw.backend()
    why = (
        "its default zone would reject"
        if backend == "nftables"
        else "nwguard's rules are nftables tables of their own, which cannot accept ahead of "
        "firewalld's iptables chains, so its default zone would still reject"
    )
    raise HostError(
        f"firewalld {fw.version()} ({backend} backend) has no 'libvirt' zone: {why} DHCP, DNS "
        f"and forwarding of network {name}'s guests; run 'nwguard firewalld-install' "
        "(or name a zone with <bridge zone='...'/>)"
    )


def set_zone(bridge: str, zone: str, fw: Firewalld | None = None) -> None:
    """Put ``bridge`` into ``zone`` (runtime)."""
    (fw or default()).add_interface(zone, bridge)


def remove_zone(bridge: str, zone: str, fw: Firewalld | None = None) -> None:
    """Take ``bridge`` out of ``zone``; not in it (firewalld restarted, reloaded, stopped) is
    fine: the destroy must finish."""
    fw = fw or default()
    if not fw.running():
        return
    if not fw.remove_interface(zone, bridge):
        log.info("bridge %s was not in firewalld zone %s any more", bridge, zone)


# ---------------------------------------------------------------------- following firewalld


def events(stop: threading.Event, address: str | None = None, poll: float = 0.5) -> Iterator[str]:
    """Yield ``"reloaded"`` on firewalld's Reloaded signal, ``"started"`` when its bus name
    gets a new owner, ``"stopped"`` when it loses it; until ``stop`` is set. Reconnects to the
    bus when it goes away (``"connected"`` after each (re)connection)."""
    from jeepney import MatchRule, message_bus
    from jeepney.io.blocking import open_dbus_connection

    reloaded = MatchRule(type="signal", interface=NAME, member="Reloaded", path=PATH)
    owner = MatchRule(
        type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
        member="NameOwnerChanged", path="/org/freedesktop/DBus",
    )  # fmt: skip
    owner.add_arg_condition(0, NAME)
    addr = address or bus_address()
    while not stop.is_set():
        try:
            conn = open_dbus_connection(bus=addr)
        except (OSError, ValueError, KeyError) as exc:
            log.debug("firewalld watcher: no bus at %s: %s", addr, exc)
            stop.wait(2.0)
            continue
        try:
            with conn.filter(reloaded, bufsize=64) as rq, conn.filter(owner, bufsize=64) as oq:
                for rule in (reloaded, owner):
                    conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=CALL_TIMEOUT)
                yield "connected"
                while not stop.is_set():
                    try:
                        conn.recv_messages(timeout=poll)
                    except TimeoutError:
                        continue
                    while rq:
                        rq.popleft()
                        yield "reloaded"
                    while oq:
                        _name, _old, new = oq.popleft().body
                        yield "started" if new else "stopped"
        except (OSError, ConnectionError) as exc:
            log.warning("firewalld watcher: lost the bus %s: %s", addr, exc)
            stop.wait(1.0)
        finally:
            conn.close()


def follow(stop: threading.Event, on_event: Callable[[str], None], **kw: Any) -> None:
    """Call ``on_event`` for each of :func:`events` (a callback's failure is logged)."""
    for event in events(stop, **kw):
        try:
            on_event(event)
        except Exception:
            log.exception("handling firewalld event %s failed", event)


# ---------------------------------------------------------------------- nwguard's zones

# What guests may reach on the host itself (spec §6.1); everything else is rejected.
HOST_SERVICES = ("dhcp", "dhcpv6", "dns", "ssh", "tftp")
HOST_PROTOCOLS = ("icmp", "ipv6-icmp")
ETC_FIREWALLD = Path("/etc/firewalld")


def _host_access(root: ET.Element) -> None:
    for service in HOST_SERVICES:
        ET.SubElement(root, "service", name=service)
    for proto in HOST_PROTOCOLS:
        ET.SubElement(root, "protocol", value=proto)


def _doc(kind: str, short: str, description: str, **attrs: str) -> ET.Element:
    root = ET.Element(kind, attrs)
    ET.SubElement(root, "short").text = short
    ET.SubElement(root, "description").text = description
    return root


def zone_documents() -> dict[str, bytes]:
    """``{relative path: XML}`` of the zones and policies nwguard needs (libvirt's set)."""
    docs: dict[str, ET.Element] = {}
    z = docs[f"zones/{LIBVIRT_ZONE}.xml"] = _doc(
        "zone", LIBVIRT_ZONE,
        "Bridges of nwguard's virtual networks: forwarding is accepted (nwguard's own rules "
        "decide it); guests reach the host only for DHCP, DHCPv6, DNS, SSH, TFTP and ICMP.",
        target="ACCEPT",
    )  # fmt: skip
    _host_access(z)
    rule = ET.SubElement(z, "rule", priority="32767")
    ET.SubElement(rule, "reject")
    docs[f"zones/{ROUTED_ZONE}.xml"] = _doc(
        "zone", ROUTED_ZONE,
        "Bridges of nwguard's routed networks; the libvirt-routed-* and libvirt-to-host "
        "policies say what passes.",
    )  # fmt: skip
    for name, ingress, egress, target, what in (
        ("libvirt-routed-in", "ANY", ROUTED_ZONE, "ACCEPT", "everything routed to the guests"),
        (ROUTED_OUT_POLICY, ROUTED_ZONE, "ANY", "ACCEPT", "everything from the guests"),
        ("libvirt-to-host", ROUTED_ZONE, "HOST", "REJECT", "guests to the host: only DHCP, DHCPv6, DNS, SSH, TFTP, ICMP"),
    ):  # fmt: skip
        p = docs[f"policies/{name}.xml"] = _doc("policy", name, f"nwguard: {what}.", target=target)
        ET.SubElement(p, "ingress-zone", name=ingress)
        ET.SubElement(p, "egress-zone", name=egress)
        if target == "REJECT":
            _host_access(p)
    out = {}
    for path, root in docs.items():
        ET.indent(root)
        out[path] = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
    return out


def install_zones(
    etc: Path = ETC_FIREWALLD, fw: Firewalld | None = None, force: bool = False
) -> list[tuple[str, str]]:
    """Write nwguard's zones and policies under ``etc`` (firewalld's admin directory) and
    reload a running firewalld so they exist at once; return ``(path, what)`` per file.

    A file that exists with other content is kept (an admin's edit) unless ``force``.
    """
    from nwguard.state.files import atomic_write

    done = []
    for rel, data in zone_documents().items():
        path = etc / rel
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = None
        if old == data:
            done.append((str(path), "up to date"))
            continue
        if old is not None and not force:
            done.append((str(path), "kept (differs; --force replaces it)"))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o644)
        done.append((str(path), "written"))
    fw = fw or default()
    if fw.running() and any(what == "written" for _, what in done):
        fw.reload()
        done.append(("firewalld", "reloaded"))
    return done
