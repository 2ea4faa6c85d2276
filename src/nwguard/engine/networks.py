"""Virtual network operations of the client: define, start, destroy, list, leases …

Persistent config: ``<config>/networks/<name>.xml`` (autostart: a symlink in
``networks/autostart/``). Runtime status: a :class:`~nwguard.state.networks.NetworkStatus`
per network records what a start did (bridge, dnsmasq, nft table, sysctls changed) and is
saved at every change, so a destroy undoes exactly that, even after the config changed or a
start died halfway.

The host side effects go through one object (:class:`HostNetworking`, from
``Context.network_host()``; tests give the context a recording one).
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nwguard.backends.nft.render import nft_json
from nwguard.compile import network as netfw
from nwguard.engine.results import Change
from nwguard.errors import ConflictError, HostError, InUseError, NotFoundError, NwguardError
from nwguard.host import dnsmasq
from nwguard.host.bridge import ALIAS_PREFIX, BridgeSpec
from nwguard.ir.nodes import Batch, Rule
from nwguard.model.network import Network
from nwguard.model.values import random_mac
from nwguard.state.files import atomic_write, remove_file
from nwguard.state.networks import NetworkState, NetworkStatus, NetworkStatusStore
from nwguard.xmlio.network_xml import parse_network, write_network

if TYPE_CHECKING:
    from nwguard.backends.choice import BackendChoice
    from nwguard.engine.context import Context
    from nwguard.host.firewalld import Firewalld

BRIDGE_PREFIX = "nwgbr"


class HostNetworking:
    """The real host side: netlink, sysctls, dnsmasq, nftables, firewalld (one method per
    effect)."""

    def __init__(self, firewalld: Firewalld | None = None) -> None:
        self._firewalld = firewalld

    def create_bridge(self, spec: BridgeSpec) -> None:
        from nwguard.host import bridge

        bridge.create_bridge(spec)

    def delete_bridge(self, name: str) -> None:
        from nwguard.host import bridge

        bridge.delete_bridge(name)

    def device_names(self) -> set[str]:
        from nwguard.host import bridge

        return bridge.device_names()

    def device_alias(self, name: str) -> str | None:
        from nwguard.host import bridge

        return bridge.device_alias(name)

    def routes_overlapping(self, subnets: list[str], ignore_dev: str) -> list[tuple[str, str]]:
        from nwguard.host import bridge

        return bridge.routes_overlapping(subnets, ignore_dev)

    def set_sysctl(self, key: str, value: str) -> str | None:
        from nwguard.host import bridge

        return bridge.set_sysctl(key, value)

    def start_dnsmasq(self, net: Network, files: dnsmasq.DnsmasqFiles) -> int:
        return dnsmasq.start(net, files)

    def stop_dnsmasq(self, pid: int | None, files: dnsmasq.DnsmasqFiles) -> None:
        dnsmasq.stop(pid, files)

    def apply(self, batch_json: dict[str, Any]) -> None:
        from nwguard.backends.nft import executor as nft_exec
        from nwguard.backends.nft.render import NftBatch

        nft_exec.apply(NftBatch(tuple(batch_json["nftables"])))

    def firewalld(self) -> Firewalld:
        """The firewalld client (D-Bus; a test gives a recording one)."""
        from nwguard.host import firewalld

        if self._firewalld is None:
            self._firewalld = firewalld.default()
        return self._firewalld

    def apply_iptables(self, batch: Batch, variant: str) -> None:
        """Add (a batch of deletions: remove) a network's rules in libvirt's iptables chains."""
        from nwguard.backends.ebiptables.network import NetworkFirewall

        NetworkFirewall(variant).apply(batch)

    def firewalld_zone(self, name: str, mode: str, requested: str | None) -> str | None:
        from nwguard.host import firewalld

        return firewalld.choose_zone(name, mode, requested, self.firewalld())

    def set_zone(self, bridge: str, zone: str) -> None:
        from nwguard.host import firewalld

        firewalld.set_zone(bridge, zone, self.firewalld())

    def remove_zone(self, bridge: str, zone: str) -> None:
        from nwguard.host import firewalld

        firewalld.remove_zone(bridge, zone, self.firewalld())


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """One row of ``net-list``."""

    name: str
    state: str
    autostart: bool
    persistent: bool
    uuid: str
    bridge: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "state": self.state, "autostart": self.autostart,
            "persistent": self.persistent, "uuid": self.uuid, "bridge": self.bridge,
        }  # fmt: skip


class NetworkService:
    """The ``net-*`` operations of :class:`nwguard.api.Client`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ storage

    @property
    def _net_host(self) -> HostNetworking:
        return self.ctx.network_host()

    def _net_config(self, name: str) -> Path:
        return Path(self.ctx.paths.network_dir, f"{name}.xml")

    def _net_autostart_link(self, name: str) -> Path:
        return Path(self.ctx.paths.network_dir, "autostart", f"{name}.xml")

    def _net_status_store(self) -> NetworkStatusStore:
        return NetworkStatusStore(self.ctx.paths)

    def _net_files(self, name: str) -> dnsmasq.DnsmasqFiles:
        return dnsmasq.DnsmasqFiles(self.ctx.paths.network_state_dir / name)

    def _net_all(self) -> dict[str, Network]:
        """Every defined network by name."""
        out = {}
        d = self.ctx.paths.network_dir
        for path in sorted(d.glob("*.xml")) if d.is_dir() else ():
            out[path.stem] = parse_network(path.read_bytes(), file=str(path))
        return out

    def _net_load(self, name: str) -> Network:
        path = self._net_config(name)
        if "/" in name or not path.is_file():
            raise NotFoundError(f"network '{name}' is not defined")
        return parse_network(path.read_bytes(), file=str(path))

    def _net_status(self, name: str) -> NetworkStatus | None:
        return self._net_status_store().get(name)

    def _net_save_status(self, status: NetworkStatus) -> None:
        self._net_status_store().put(status)

    def _net_active_names(self) -> set[str]:
        return self._net_status_store().names()

    # ------------------------------------------------------------------ define / undefine

    def net_define(self, xml_text: str | bytes, file: str | None = None) -> Network:
        """Define (or redefine) a network from libvirt XML; return it as stored.

        Fills in a missing uuid, bridge name (first free ``nwgbrN``) and bridge MAC.
        Refuses a name or uuid clash, a bridge in use, and subnets overlapping another network.
        """
        net = parse_network(xml_text, file=file)
        with self.ctx.lock():
            others = self._net_all()
            old = others.pop(net.name, None)
            net = self._net_complete(net, old, others)
            self._net_check_conflicts(net, others)
            if not self.ctx.dry_run:
                atomic_write(self._net_config(net.name), write_network(net), mode=0o644)
        return net

    def _net_complete(
        self, net: Network, old: Network | None, others: dict[str, Network]
    ) -> Network:
        if old is not None and net.uuid and net.uuid != old.uuid:
            raise ConflictError(f"network '{net.name}' already exists with uuid {old.uuid}")
        uuid = net.uuid or (old.uuid if old else str(uuidlib.uuid4()))
        bridge = net.bridge
        if not bridge.name:
            name = old.bridge.name if old and old.bridge.name else self._net_free_bridge(others)
            bridge = replace(bridge, name=name)
        mac = net.mac or (old.mac if old else None) or random_mac()
        return replace(net, uuid=uuid, bridge=bridge, mac=mac)

    def _net_free_bridge(self, others: dict[str, Network]) -> str:
        used = {n.bridge.name for n in others.values()} | self._net_host.device_names()
        for i in range(1 << 16):
            if f"{BRIDGE_PREFIX}{i}" not in used:
                return f"{BRIDGE_PREFIX}{i}"
        raise ConflictError("no free bridge name")  # pragma: no cover

    def _net_check_conflicts(self, net: Network, others: dict[str, Network]) -> None:
        br = net.bridge_name
        for other in others.values():
            if other.uuid == net.uuid:
                raise ConflictError(f"uuid {net.uuid} is already used by network '{other.name}'")
            if other.bridge.name == br:
                raise ConflictError(f"bridge name '{br}' is already used by network '{other.name}'")
            for a in net.ips:
                for b in other.ips:
                    if a.network.version == b.network.version and a.network.overlaps(b.network):
                        raise ConflictError(
                            f"subnet {a.network} of network '{net.name}' overlaps subnet "
                            f"{b.network} of network '{other.name}'"
                        )
        self._net_check_bridge_free(net)

    def _net_check_bridge_free(self, net: Network) -> None:
        br = net.bridge_name
        if br not in self._net_host.device_names():
            return
        if self._net_host.device_alias(br) != ALIAS_PREFIX + net.name:
            raise ConflictError(f"bridge name '{br}' is already in use by an existing device")

    def net_undefine(self, name: str) -> None:
        """Remove a network's config (and autostart); refused while it is active."""
        with self.ctx.lock():
            self._net_load(name)
            if name in self._net_active_names():
                raise InUseError(f"network '{name}' is active; destroy it first")
            if not self.ctx.dry_run:
                remove_file(self._net_autostart_link(name))
                remove_file(self._net_config(name))

    # ------------------------------------------------------------------ start

    def net_start(self, name: str) -> Change:
        """Start a defined network: bridge, addresses, dnsmasq, forwarding, firewall.

        All or nothing: on a failure every step done is undone in reverse, and the error says
        which step failed and why. With ``dry_run`` returns the nft batch and changes nothing.
        """
        with self.ctx.lock():
            net = self._net_load(name)
            status = self._net_status(name)
            if status is not None and status.active:
                raise ConflictError(f"network '{name}' is already active")
            if self.ctx.dry_run:
                return Change(batch=netfw.network_batch(net), applied=False)
            if status is not None:  # a start that died halfway: clean up what it recorded
                self._net_teardown(status)
            self._net_precheck_start(net)
            self._net_run_start(net)
        batch = netfw.network_batch(net)  # what the firewall step applied (deterministic)
        return Change(batch=batch if batch else None, applied=True)

    def _net_precheck_start(self, net: Network) -> None:
        others = self._net_all()
        others.pop(net.name, None)
        for other in others.values():
            if other.name in self._net_active_names() and other.bridge.name == net.bridge_name:
                raise ConflictError(
                    f"bridge '{net.bridge_name}' is used by active network '{other.name}'"
                )
        self._net_check_bridge_free(net)
        subnets = [str(ip.network) for ip in net.ips]
        clash = self._net_host.routes_overlapping(subnets, net.bridge_name) if subnets else []
        if clash:
            route, dev = clash[0]
            raise ConflictError(
                f"network '{net.name}': its subnet is already in use by interface {dev} (route {route})"
            )

    def _net_run_start(self, net: Network) -> None:
        files = self._net_files(net.name)
        status = _Progress(
            NetworkStatus(net.name, net.uuid, write_network(net), str(files.dir), time.time()),
            self._net_save_status,
        )
        steps: list[tuple[str, Callable[[], None]]] = [
            ("create bridge", lambda: self._net_step_bridge(net, status)),
            ("set firewalld zone", lambda: self._net_step_zone(net, status)),
            ("start dnsmasq", lambda: self._net_step_dnsmasq(net, files, status)),
            ("enable forwarding", lambda: self._net_step_sysctls(net, status)),
            ("install firewall", lambda: self._net_step_firewall(net, status)),
        ]
        for what, step in steps:
            try:
                step()
            except NwguardError as exc:
                problems = self._net_teardown(status.status)
                undone = (
                    "rolled back" if not problems else "rollback incomplete: " + "; ".join(problems)
                )
                raise type(exc)(
                    f"cannot start network '{net.name}': {what} failed: {exc} ({undone})"
                ) from exc
        status.record(state=NetworkState.ACTIVE)

    def _net_step_bridge(self, net: Network, status: _Progress) -> None:
        spec = BridgeSpec(
            name=net.bridge_name, stp=net.bridge.stp_on, delay=net.bridge.forward_delay, mac=net.mac,
            mtu=net.mtu, addresses=tuple(f"{ip.address}/{ip.prefix}" for ip in net.ips), owner=net.name,
        )  # fmt: skip
        self._net_host.create_bridge(spec)
        status.record(bridge=net.bridge_name)

    def _net_step_zone(self, net: Network, status: _Progress) -> None:
        zone = self._net_host.firewalld_zone(net.name, net.mode, net.bridge.zone)
        if zone:
            self._net_host.set_zone(net.bridge_name, zone)
            status.record(zone=zone)

    def _net_step_dnsmasq(
        self, net: Network, files: dnsmasq.DnsmasqFiles, status: _Progress
    ) -> None:
        if not dnsmasq.needed(net):
            return
        status.record(dnsmasq_files=True)  # files are written from here on
        status.record(dnsmasq_pid=self._net_host.start_dnsmasq(net, files))

    def _net_step_sysctls(self, net: Network, status: _Progress) -> None:
        for key in netfw.forwarding_sysctls(net):
            old = self._net_host.set_sysctl(key, "1")
            if old is not None and old != "1":
                status.record(sysctls=(*status.status.sysctls, (key, old)))

    def _net_step_firewall(self, net: Network, status: _Progress) -> None:
        batch = netfw.network_batch(net)
        if not batch:
            return
        status.record(table=netfw.table_name(net.bridge_name))
        try:
            self._net_firewall(batch)
        except NwguardError:
            status.record(table=None)  # one transaction: a refused batch left nothing behind
            raise

    # ------------------------------------------------------------------ destroy

    def net_destroy(self, name: str) -> Change:
        """Stop an active network: remove its rules, dnsmasq, bridge and runtime files."""
        with self.ctx.lock():
            status = self._net_status(name)
            if status is None:
                self._net_load(name)
                raise ConflictError(f"network '{name}' is not active")
            batch = self._net_teardown_batch(status, status.table) if status.table else Batch()
            if self.ctx.dry_run:
                return Change(batch=batch, applied=False)
            problems = self._net_teardown(status)
        if problems:
            raise HostError(f"network '{name}' was not fully removed: " + "; ".join(problems))
        return Change(batch=batch, applied=True)

    def _net_teardown(self, status: NetworkStatus) -> list[str]:
        """Undo what ``status`` records, in reverse start order; return what failed."""
        host, problems = self._net_host, []
        name = status.name
        files = dnsmasq.DnsmasqFiles(Path(status.dnsmasq_dir or self._net_files(name).dir))
        # Not in force from here on, and each undone piece recorded as gone: a destroy that
        # fails halfway leaves nothing for nwguardd to restore (what is destroyed stays so).
        progress = _Progress(status, self._net_save_status)
        if status.active:
            progress.record(state=NetworkState.STARTING)
        actions: list[tuple[str, Callable[[], None], dict[str, Any]]] = []
        table, zone, bridge = status.table, status.zone, status.bridge
        if table:
            actions.append(("firewall", lambda: self._net_firewall_off(status, table),
                            {"table": None}))  # fmt: skip
        actions.append(("forwarding", lambda: self._net_restore_sysctls(status), {"sysctls": ()}))
        if status.dnsmasq_files:
            actions.append(("dnsmasq", lambda: host.stop_dnsmasq(status.dnsmasq_pid, files),
                            {"dnsmasq_pid": None, "dnsmasq_files": False}))  # fmt: skip
        if zone and bridge:
            actions.append(
                ("firewalld zone", lambda: host.remove_zone(bridge, zone), {"zone": None})
            )
        if bridge:
            actions.append(("bridge", lambda: host.delete_bridge(bridge), {"bridge": None}))
        for what, action, gone in actions:
            try:
                action()
            except NwguardError as exc:
                problems.append(f"{what}: {exc}")
            else:
                progress.status = replace(progress.status, **gone)
        if problems:  # the status stays: it names only what is still there
            progress.record()
        if not problems:
            _rmdir(files.dir)
            self._net_status_store().remove(name)
        return problems

    def move_firewalls(self, old: BackendChoice, new: BackendChoice) -> list[str]:
        """Put every active network's firewall on ``new``, then take it off ``old`` (a
        backend switch: the rules of both are in force meanwhile). Returns the networks."""
        moved = []
        for name in sorted(self._net_active_names()):
            status = self._net_status(name)
            if status is None or not status.table or not status.xml:
                continue
            self._net_firewall(netfw.network_batch(parse_network(status.xml)), new)
            self._net_firewall_off(status, status.table, old)
            moved.append(name)
        return moved

    def _net_firewall(self, batch: Batch, backend: BackendChoice | None = None) -> None:
        """Install a network's firewall on the backend in force (or ``backend``)."""
        backend = backend or self.ctx.backend()
        if backend.name == "iptables":
            self._net_host.apply_iptables(batch, backend.variant or "nft")
        else:
            self._net_host.apply(nft_json(batch))

    def _net_firewall_off(
        self, status: NetworkStatus, table: str, backend: BackendChoice | None = None
    ) -> None:
        """Remove it (:meth:`_net_teardown_batch`) on the backend in force (or ``backend``)."""
        backend = backend or self.ctx.backend()
        batch = self._net_teardown_batch(status, table, backend)
        if backend.name == "iptables":
            self._net_host.apply_iptables(batch, backend.variant or "nft")
        else:
            self._net_host.apply(nft_json(batch))

    def _net_teardown_batch(
        self, status: NetworkStatus, table: str, backend: BackendChoice | None = None
    ) -> Batch:
        """The nftables table's removal; on iptables, the deletion of exactly the rules of
        the network as it was started (its XML then): they live in libvirt's shared chains."""
        if (backend or self.ctx.backend()).name != "iptables":
            return netfw.teardown_batch(table)
        out = Batch()
        for cmd in netfw.network_batch(parse_network(status.xml)).commands:
            if cmd.verb == "add" and isinstance(cmd.obj, Rule):
                out.delete(cmd.obj)
        return out

    def _net_restore_sysctls(self, status: NetworkStatus) -> None:
        """Put back sysctls this network changed, unless another active network needs them."""
        active = self._net_active_names() - {status.name}
        needed: set[str] = set()
        for other in active:
            st = self._net_status(other)
            if st and st.xml:
                needed.update(netfw.forwarding_sysctls(parse_network(st.xml)))
        for key, old in status.sysctls:
            if key not in needed:
                self._net_host.set_sysctl(key, old)

    # ------------------------------------------------------------------ queries

    def net_list(self, all: bool = False) -> list[NetworkRecord]:
        """Networks with their state (active networks only unless ``all``)."""
        active = self._net_active_names()
        out = []
        for name, net in self._net_all().items():
            state = "active" if name in active else "inactive"
            if all or state == "active":
                out.append(
                    NetworkRecord(
                        name,
                        state,
                        self._net_autostart_link(name).exists(),
                        True,
                        net.uuid or "",
                        net.bridge.name or "",
                    )
                )
        return out

    def net_info(self, name: str) -> dict[str, Any]:
        """virsh net-info: Name, UUID, Active, Persistent, Autostart, Bridge."""
        net = self._net_load(name)
        return {
            "Name": net.name, "UUID": net.uuid, "Active": name in self._net_active_names(),
            "Persistent": True, "Autostart": self._net_autostart_link(name).exists(),
            "Bridge": net.bridge.name,
        }  # fmt: skip

    def net_dumpxml(self, name: str, inactive: bool = False) -> str:
        """The network's XML: the running one while active (unless ``inactive``), else the config."""
        net = self._net_load(name)
        status = self._net_status(name)
        if status and status.xml and not inactive:
            return status.xml
        return write_network(net)

    def net_edit_xml(self, name: str) -> str:
        """The persistent XML to edit (``net-edit`` step one)."""
        return write_network(self._net_load(name))

    def net_redefine(self, name: str, xml_text: str) -> Network:
        """Save edited XML for network ``name`` (``net-edit`` step two); the name must stay."""
        net = parse_network(xml_text, file=f"<edited {name}>")
        if net.name != name:
            raise ConflictError(
                f"the edited XML renames network '{name}' to '{net.name}'; renaming is not supported"
            )
        return self.net_define(xml_text, file=f"<edited {name}>")

    def net_autostart(self, name: str, enable: bool = True) -> None:
        """Mark (or unmark) a network to be started by ``net_autostart_all`` / the daemon."""
        with self.ctx.lock():
            self._net_load(name)
            link = self._net_autostart_link(name)
            if self.ctx.dry_run:
                return
            remove_file(link)
            if enable:
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(f"../{name}.xml", link)

    def net_autostart_all(self) -> list[str]:
        """Start every autostart network that is not active; return the names started."""
        started = []
        for rec in self.net_list(all=True):
            if rec.autostart and rec.state != "active":
                self.net_start(rec.name)
                started.append(rec.name)
        return started

    def net_dhcp_leases(self, name: str) -> list[dnsmasq.LeaseRecord]:
        """The DHCP leases dnsmasq handed out on an active network."""
        self._net_load(name)
        status = self._net_status(name)
        if status is None:
            raise ConflictError(f"network '{name}' is not active")
        net = parse_network(status.xml)
        files = dnsmasq.DnsmasqFiles(Path(status.dnsmasq_dir))
        try:
            text = files.leases.read_text()
        except FileNotFoundError:
            return []
        return dnsmasq.parse_leases(text, net)


class _Progress:
    """The status of a start under way, saved at every change before the next host effect:
    a start that dies leaves a record of what to undo."""

    __slots__ = ("_save", "status")

    def __init__(self, status: NetworkStatus, save: Callable[[NetworkStatus], None]) -> None:
        self.status, self._save = status, save

    def record(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)
        self._save(self.status)


def _rmdir(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            remove_file(child)
        path.rmdir()
