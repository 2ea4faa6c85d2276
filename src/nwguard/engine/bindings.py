"""Client operations on filter bindings (libvirt's ``nwfilter-binding-*``) and the hook that
rebuilds bound ports when filters change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nwguard.model.binding import FilterBinding
from nwguard.model.filter import Filter
from nwguard.xmlio.binding_xml import parse_binding, write_binding

if TYPE_CHECKING:
    from nwguard.engine.context import Context
    from nwguard.engine.ports import Engine


class BindingOps:
    """Create, delete, list and dump filter bindings; keep bound ports in step with filters."""

    ctx: Context

    def _engine(self) -> Engine:
        eng = self.ctx.cache.get("engine")
        if eng is None:
            from nwguard.engine.ports import Engine

            eng = self.ctx.cache["engine"] = Engine(self.ctx.paths, dry_run=self.ctx.dry_run)
        return eng

    def nwfilter_binding_create(self, xml: str | bytes, file: str | None = None) -> FilterBinding:
        """Bind a filter to a port from ``<filterbinding>`` XML; its rules are in force on return."""
        b = parse_binding(xml, file)
        with self.ctx.lock():
            result = self._engine().bind(b, self._read_filters())  # type: ignore[attr-defined]
        self.ctx.cache["last_batch"] = result.batch
        return b

    def nwfilter_binding_delete(self, portdev: str) -> None:
        """Remove a port's binding and all its rules."""
        with self.ctx.lock():
            result = self._engine().unbind(portdev)
        self.ctx.cache["last_batch"] = result.batch

    def nwfilter_binding_list(self) -> list[FilterBinding]:
        """Every binding, sorted by port."""
        return sorted(self._engine().bindings().values(), key=lambda b: b.portdev)

    def nwfilter_binding_dumpxml(self, portdev: str) -> str:
        """The binding's XML; addresses learned for it appear as parameter ``IP``."""
        from nwguard.engine.learning import with_learned

        return write_binding(with_learned(self._engine().binding(portdev), self.ctx.paths))

    def nwfilter_reapply(self) -> None:
        """Re-send every bound port's rules in one transaction (what SIGHUP does)."""
        with self.ctx.lock():
            self._engine().reapply()

    def _filters_changed(self, new_map: Mapping[str, Filter], changed: set[str] | None = None) -> Any:
        """Called by nwfilter define/undefine before saving: rebuild affected ports or veto."""
        if changed is None:
            old = self._read_filters()  # type: ignore[attr-defined]  # not saved yet: the old map
            changed = {n for n in old.keys() | new_map.keys() if old.get(n) != new_map.get(n)}
        result = self._engine().rebuild(new_map, changed)
        self.ctx.cache["last_batch"] = result.batch
        return result
