"""The Python API: one client object with every operation the CLI offers.

:class:`Client` is a facade: each method is written out here and delegates to the service
of its feature area (:mod:`nwguard.engine.filters`, ``.bindings``, ``.networks``,
``.interfaces``), built on the shared :class:`Context` (paths, lock, engine). The network
and interface services are imported on first use: a filter or binding command never loads
the networking modules.

Every method is marked :func:`query` (reads only) or :func:`change`; :data:`METHODS` lists
them in order, and the daemon serves exactly those (the read-only socket only the queries).
Every change that touches the kernel returns a :class:`~nwguard.engine.results.Change`
carrying the batch it applied (or, with ``dry_run``, would apply).

>>> from nwguard.api import Client
>>> c = Client.open(config_dir="/tmp/nwg-doc/etc", state_dir="/tmp/nwg-doc/run")
>>> "clean-traffic" in [f.name for f in c.nwfilter_list()]
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from nwguard.engine.context import Context
from nwguard.state.paths import Paths

if TYPE_CHECKING:
    from nwguard.engine.bindings import BindingService
    from nwguard.engine.filters import FilterService
    from nwguard.engine.interfaces import InterfaceRecord, InterfaceService
    from nwguard.engine.networks import NetworkRecord, NetworkService
    from nwguard.engine.results import BindingChange, Change, FilterChange, InterfaceChange
    from nwguard.engine.stats import PortStats, StatsService
    from nwguard.host.dnsmasq import LeaseRecord
    from nwguard.model.binding import FilterBinding
    from nwguard.model.filter import Filter
    from nwguard.model.network import Network

Kind = Literal["query", "change"]
QUERY: Final = "query"
CHANGE: Final = "change"

METHODS: dict[str, Kind] = {}
"""Every public method of :class:`Client` and its kind, in definition order (the decorators
below fill it): the daemon's registry and :class:`~nwguard.daemon.proxy.DaemonProxy` are
derived from it."""

_F = TypeVar("_F", bound=Callable[..., Any])


def query(fn: _F) -> _F:
    """Mark a facade method that only reads (the daemon's read-only socket serves it)."""
    METHODS[fn.__name__] = QUERY
    return fn


def change(fn: _F) -> _F:
    """Mark a facade method that changes configuration, state or the kernel."""
    METHODS[fn.__name__] = CHANGE
    return fn


class Client:
    """Every nwguard operation: ``nwfilter_*``, ``nwfilter_binding_*``, ``net_*``, ``iface_*``."""

    def __init__(self, ctx: Context) -> None:
        # imported here: the daemon's proxy (a Client with no services) loads this module only
        from nwguard.engine.bindings import BindingService
        from nwguard.engine.filters import FilterService

        self.ctx = ctx
        self._filters: FilterService = FilterService(ctx)
        self._bindings: BindingService = BindingService(ctx, self._filters)
        self._filters.before_save = self._bindings.filters_changed
        self._net: NetworkService | None = None
        self._ifaces: InterfaceService | None = None
        self._stats: StatsService | None = None

    @classmethod
    def open(
        cls,
        config_dir: str | None = None,
        state_dir: str | None = None,
        dry_run: bool = False,
    ) -> Client:
        """Open a client on a configuration and a state directory (defaults: see Paths)."""
        return Client(Context(Paths.from_env(config_dir, state_dir), dry_run=dry_run))

    def _networks(self) -> NetworkService:
        if self._net is None:
            from nwguard.engine.networks import NetworkService

            self._net = NetworkService(self.ctx)
        return self._net

    def _interfaces(self) -> InterfaceService:
        if self._ifaces is None:
            from nwguard.engine.interfaces import InterfaceService

            self._ifaces = InterfaceService(self.ctx, self._bindings, self._networks())
        return self._ifaces

    # ------------------------------------------------------------------------- filters

    @query
    def nwfilter_list(self) -> list[Filter]:
        """Every filter, sorted by name (a fresh directory first gets the 24 built-ins)."""
        return self._filters.nwfilter_list()

    @query
    def nwfilter_get(self, name_or_uuid: str) -> Filter:
        """The filter with that name (or else that UUID); NotFoundError if none."""
        return self._filters.nwfilter_get(name_or_uuid)

    @query
    def nwfilter_dumpxml(self, name_or_uuid: str) -> str:
        """The filter's XML, as libvirt writes it (``virsh nwfilter-dumpxml``)."""
        return self._filters.nwfilter_dumpxml(name_or_uuid)

    @change
    def nwfilter_define(
        self, xml: str | bytes, file: str | None = None, lenient: bool | None = None
    ) -> FilterChange:
        """Create or update a filter; ``lenient`` ignores what libvirt ignores, warning."""
        return self._filters.nwfilter_define(xml, file, lenient)

    @change
    def nwfilter_undefine(self, name_or_uuid: str) -> FilterChange:
        """Remove a filter; refused (InUseError) while another filter or a port uses it."""
        return self._filters.nwfilter_undefine(name_or_uuid)

    # ------------------------------------------------------------------------- bindings

    @query
    def nwfilter_binding_list(self) -> list[FilterBinding]:
        """Every binding, sorted by port."""
        return self._bindings.nwfilter_binding_list()

    @query
    def nwfilter_binding_dumpxml(self, portdev: str) -> str:
        """The binding's XML; addresses learned for it appear as parameter ``IP``."""
        return self._bindings.nwfilter_binding_dumpxml(portdev)

    @change
    def nwfilter_binding_create(self, xml: str | bytes, file: str | None = None) -> BindingChange:
        """Bind a filter to a port from ``<filterbinding>`` XML; its rules are in force on return."""
        return self._bindings.nwfilter_binding_create(xml, file)

    @change
    def nwfilter_binding_delete(self, portdev: str) -> Change:
        """Remove a port's binding and all its rules."""
        return self._bindings.nwfilter_binding_delete(portdev)

    @change
    def nwfilter_binding_create_many(self, xmls: list[str]) -> Change:
        """Bind many ports from ``<filterbinding>`` XML in one transaction, all or nothing."""
        return self._bindings.nwfilter_binding_create_many(xmls)

    @change
    def nwfilter_binding_delete_many(self, portdevs: list[str]) -> Change:
        """Remove many ports' bindings and rules in one transaction, all or nothing."""
        return self._bindings.nwfilter_binding_delete_many(portdevs)

    @change
    def nwfilter_reapply(self) -> Change:
        """Re-send every bound port's rules in one transaction (what SIGHUP does)."""
        return self._bindings.nwfilter_reapply()

    def _stats_service(self) -> StatsService:
        if self._stats is None:
            from nwguard.engine.stats import StatsService

            self._stats = StatsService(self.ctx)
        return self._stats

    @query
    def nwfilter_binding_stats(self, portdev: str) -> PortStats:
        """A bound port's counters (accepted, dropped; sent, received) and its rules' drops."""
        return self._stats_service().nwfilter_binding_stats(portdev)

    @query
    def nwfilter_binding_stats_all(self) -> list[PortStats]:
        """The counters of every bound port, sorted by port."""
        return self._stats_service().nwfilter_binding_stats_all()

    # ------------------------------------------------------------------------- networks

    @query
    def net_list(self, all: bool = False) -> list[NetworkRecord]:
        """Networks with their state (active networks only unless ``all``)."""
        return self._networks().net_list(all=all)

    @query
    def net_info(self, name: str) -> dict[str, Any]:
        """virsh net-info: Name, UUID, Active, Persistent, Autostart, Bridge."""
        return self._networks().net_info(name)

    @query
    def net_dumpxml(self, name: str, inactive: bool = False) -> str:
        """The network's XML: the running one while active (unless ``inactive``), else the config."""
        return self._networks().net_dumpxml(name, inactive=inactive)

    @query
    def net_edit_xml(self, name: str) -> str:
        """The persistent XML to edit (``net-edit`` step one)."""
        return self._networks().net_edit_xml(name)

    @query
    def net_dhcp_leases(self, name: str) -> list[LeaseRecord]:
        """The DHCP leases dnsmasq handed out on an active network."""
        return self._networks().net_dhcp_leases(name)

    @change
    def net_define(self, xml_text: str | bytes, file: str | None = None) -> Network:
        """Define (or redefine) a network from libvirt XML; return it as stored."""
        return self._networks().net_define(xml_text, file=file)

    @change
    def net_redefine(self, name: str, xml_text: str) -> Network:
        """Save edited XML for network ``name`` (``net-edit`` step two); the name must stay."""
        return self._networks().net_redefine(name, xml_text)

    @change
    def net_undefine(self, name: str) -> None:
        """Remove a network's config (and autostart); refused while it is active."""
        self._networks().net_undefine(name)

    @change
    def net_start(self, name: str) -> Change:
        """Start a defined network (bridge, dnsmasq, forwarding, firewall), all or nothing."""
        return self._networks().net_start(name)

    @change
    def net_destroy(self, name: str) -> Change:
        """Stop an active network: remove its rules, dnsmasq, bridge and runtime files."""
        return self._networks().net_destroy(name)

    @change
    def net_autostart(self, name: str, enable: bool = True) -> None:
        """Mark (or unmark) a network to be started by ``net_autostart_all`` / the daemon."""
        self._networks().net_autostart(name, enable=enable)

    @change
    def net_autostart_all(self) -> list[str]:
        """Start every autostart network that is not active; return the names started."""
        return self._networks().net_autostart_all()

    # ------------------------------------------------------------------------- interfaces

    @query
    def iface_list(self) -> list[InterfaceRecord]:
        """Attached interfaces, sorted by device."""
        return self._interfaces().iface_list()

    @change
    def iface_attach(
        self, xml: str | bytes, file: str | None = None, veth_peer: str | None = None
    ) -> InterfaceChange:
        """Create/plug the port of an ``<interface>`` and bind its filter, all or nothing."""
        return self._interfaces().iface_attach(xml, file, veth_peer)

    @change
    def iface_detach(self, dev: str) -> Change:
        """Remove the interface's binding and, if nwguard created it, the device."""
        return self._interfaces().iface_detach(dev)
