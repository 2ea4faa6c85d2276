"""The binding service: filter bindings (libvirt's ``nwfilter-binding-*``), and the hook that
rebuilds bound ports when filters change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from nwguard.engine.context import Context
from nwguard.engine.results import BindingChange, Change

if TYPE_CHECKING:  # a delete needs neither the filters nor the XML parser (start-up)
    from nwguard.engine.filters import FilterService
    from nwguard.model.binding import FilterBinding
    from nwguard.model.filter import Filter


class BindingService:
    """Create, delete, list and dump filter bindings; keep bound ports in step with filters."""

    def __init__(self, ctx: Context, filters: FilterService) -> None:
        self.ctx = ctx
        self.filters = filters

    def nwfilter_binding_create(self, xml: str | bytes, file: str | None = None) -> BindingChange:
        """Bind a filter to a port from ``<filterbinding>`` XML; its rules are in force on return."""
        from nwguard.xmlio.binding_xml import parse_binding

        b = parse_binding(xml, file)
        with self.ctx.lock():
            result = self.ctx.engine().bind(b, self.filters.read_filters())
        return BindingChange(batch=result.batch, applied=result.applied, binding=b)

    def nwfilter_binding_delete(self, portdev: str) -> Change:
        """Remove a port's binding and all its rules."""
        with self.ctx.lock():
            return self.ctx.engine().unbind(portdev)

    def nwfilter_binding_create_many(self, xmls: Iterable[str | bytes]) -> Change:
        """Bind many ports in one transaction, all or nothing (an orchestrator's bulk path)."""
        from nwguard.xmlio.binding_xml import parse_binding

        bs = [parse_binding(x) for x in xmls]
        with self.ctx.lock():
            return self.ctx.engine().bind_many(bs, self.filters.read_filters())

    def nwfilter_binding_delete_many(self, portdevs: Iterable[str]) -> Change:
        """Remove many ports' bindings and rules in one transaction, all or nothing."""
        with self.ctx.lock():
            return self.ctx.engine().unbind_many(portdevs)

    def nwfilter_binding_list(self) -> list[FilterBinding]:
        """Every binding, sorted by port."""
        return sorted(self.ctx.engine().bindings().values(), key=lambda b: b.portdev)

    def nwfilter_binding_dumpxml(self, portdev: str) -> str:
        """The binding's XML; addresses learned for it appear as parameter ``IP``."""
        from nwguard.engine.learning import with_learned
        from nwguard.xmlio.binding_xml import write_binding

        return write_binding(with_learned(self.ctx.engine().binding(portdev), self.ctx.paths))

    def nwfilter_reapply(self) -> Change:
        """Re-send every bound port's rules in one transaction (what SIGHUP does)."""
        with self.ctx.lock():
            return self.ctx.engine().reapply()

    def filters_changed(
        self, new_map: Mapping[str, Filter], changed: set[str] | None = None
    ) -> Change:
        """The filter service's hook: rebuild the ports the new filters affect, or veto."""
        if changed is None:
            old = self.filters.read_filters()  # not saved yet: the old map
            changed = {n for n in old.keys() | new_map.keys() if old.get(n) != new_map.get(n)}
        return self.ctx.engine().rebuild(new_map, changed)
