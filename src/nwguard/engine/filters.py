"""The filter service: ``nwfilter_define``, ``_undefine``, ``_list``, ``_get``, ``_dumpxml``.

Every change runs under the exclusive ``Context.lock()``: load the directory, check, let the
binding service see the result, save.

Hook for the binding service (:attr:`FilterService.before_save`, wired by
:class:`nwguard.api.Client`): called, with the lock held, with the complete ``{name: Filter}``
map as it will be after a define or undefine, before anything is saved. Raising from it
(e.g. InUseError for a filter a port still uses, ApplyError when the rebuilt rules are
refused) vetoes the change and nothing is written; the :class:`Change` it returns is the
batch the define or undefine reports. A define whose result serialises exactly like the
filter it replaces skips the hook. With ``dry_run`` the checks and the hook run but nothing
is saved.

>>> import tempfile
>>> from nwguard.api import Client
>>> d = tempfile.mkdtemp()
>>> c = Client.open(config_dir=d + "/etc", state_dir=d + "/run")
>>> f = c.nwfilter_define("<filter name='no-smtp'><rule action='drop' direction='out'>"
...                       "<tcp dstportstart='25'/></rule></filter>").filter
>>> c.nwfilter_get(f.uuid).name
'no-smtp'
>>> len(c.nwfilter_list())
25
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nwguard.engine.context import Context
from nwguard.engine.results import Batch, Change, FilterChange
from nwguard.state.config import read_config

if TYPE_CHECKING:  # the store and the XML parser are loaded on use: a binding delete needs neither
    from nwguard.model.filter import Filter
    from nwguard.state.filters import BeforeSave, FilterMap

FiltersChanged = Callable[["FilterMap"], "Change | None"]
"""The binding service's hook: rebuild what the new filter map changes, or veto it."""


class FilterService:
    """Define, undefine, list, get and dump network filters (libvirt's ``nwfilter-*``)."""

    def __init__(self, ctx: Context, before_save: FiltersChanged | None = None) -> None:
        self.ctx = ctx
        self.before_save = before_save

    # ------------------------------------------------------------------------- queries

    def nwfilter_list(self) -> list[Filter]:
        """Every filter, sorted by name (a fresh directory first gets the 24 built-ins)."""
        return sorted(self.read_filters().values(), key=lambda f: f.name)

    def nwfilter_get(self, name_or_uuid: str) -> Filter:
        """The filter with that name (or else that UUID); NotFoundError if none."""
        from nwguard.state.filters import FilterStore

        return FilterStore.get(name_or_uuid, self.read_filters())

    def nwfilter_dumpxml(self, name_or_uuid: str) -> str:
        """The filter's XML, as libvirt writes it (``virsh nwfilter-dumpxml``)."""
        from nwguard.xmlio.filter_xml import write_filter

        return write_filter(self.nwfilter_get(name_or_uuid))

    # ------------------------------------------------------------------------- changes

    def nwfilter_define(
        self, xml: str | bytes, file: str | None = None, lenient: bool | None = None
    ) -> FilterChange:
        """Create a filter, or update the filter of that name; return it as stored.

        ``file`` only names the document in error messages. Refused (nothing changes): invalid
        XML, a UUID another filter has, a name another UUID has, a reference loop. Without
        ``<uuid>`` an existing filter keeps its UUID. ``lenient`` (None: ``lenient`` of
        ``nwguard.conf``, default off) ignores unknown attributes and elements as libvirt
        does; the result's ``warnings`` name each one.
        """
        if lenient is None:
            lenient = read_config(self.ctx.paths.config_dir).lenient_define
        warnings: list[str] = []
        with self.ctx.lock():
            store = self.ctx.filter_store()
            filters = self.locked_filters()
            new = store.parse(xml, file, filters, warnings.append if lenient else None)
            hook, seen = self._hook()
            store.define(new, filters, hook, save=not self.ctx.dry_run)
        return FilterChange(
            batch=_batch(seen),
            applied=not self.ctx.dry_run,
            filter=new,
            warnings=tuple(warnings),
        )

    def nwfilter_undefine(self, name_or_uuid: str) -> FilterChange:
        """Remove a filter; refused (InUseError) while another filter or a port uses it."""
        with self.ctx.lock():
            store = self.ctx.filter_store()
            filters = self.locked_filters()
            hook, seen = self._hook()
            old = store.undefine(name_or_uuid, filters, hook, save=not self.ctx.dry_run)
        return FilterChange(batch=_batch(seen), applied=not self.ctx.dry_run, filter=old)

    # ------------------------------------------------------------------------- for other services

    def locked_filters(self) -> FilterMap:
        """All filters; the caller holds the exclusive lock (installs built-ins on first use)."""
        store = self.ctx.filter_store()
        if self.ctx.dry_run:
            return store.preview()
        store.setup()
        return store.load(write_back=True)

    def read_filters(self) -> FilterMap:
        """All filters, read under the shared lock (the exclusive one on a fresh directory)."""
        store = self.ctx.filter_store()
        if self.ctx.held == "exclusive":
            return self.locked_filters()
        if store.needs_setup() and self.ctx.held is None and not self.ctx.dry_run:
            with self.ctx.lock():
                return self.locked_filters()
        with self.ctx.lock(shared=True):
            return store.preview()

    def _hook(self) -> tuple[BeforeSave | None, list[Change | None]]:
        """The store's hook, and the list that keeps what the binding service returned."""
        before_save = self.before_save
        seen: list[Change | None] = []
        if before_save is None:
            return None, seen

        def hook(new_map: FilterMap) -> None:
            seen.append(before_save(new_map))

        return hook, seen


def _batch(seen: list[Change | None]) -> Batch:
    """The hook's batch (None when the hook did not run: nothing to rebuild)."""
    return seen[0].batch if seen and seen[0] is not None else None
