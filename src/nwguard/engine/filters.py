"""Client operations on network filters: ``nwfilter_define``, ``_undefine``, ``_list``, ...

A mixin of :class:`nwguard.api.Client`. Every change runs under the exclusive
``Context.lock()``: load the directory, check, let the binding engine see the result, save.

Hook for the binding engine: when the client has a ``_filters_changed(new_map)`` method it is
called, with the lock held, with the complete ``{name: Filter}`` map as it will be after a
define or undefine, before anything is saved. Raising from it (e.g. InUseError for a filter a
port still uses, ApplyError when the rebuilt rules are refused) vetoes the change and nothing
is written. A define whose result serialises exactly like the filter it replaces skips the
hook. With ``dry_run`` the checks and the hook run but nothing is saved.

>>> import tempfile
>>> from nwguard.api import Client
>>> d = tempfile.mkdtemp()
>>> c = Client.open(config_dir=d + "/etc", state_dir=d + "/run")
>>> f = c.nwfilter_define("<filter name='no-smtp'><rule action='drop' direction='out'>"
...                       "<tcp dstportstart='25'/></rule></filter>")
>>> c.nwfilter_get(f.uuid).name
'no-smtp'
>>> len(c.nwfilter_list())
25
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nwguard.model.filter import Filter
from nwguard.state.filters import BeforeSave, FilterMap, FilterStore
from nwguard.xmlio.filter_xml import write_filter

if TYPE_CHECKING:
    from nwguard.engine.context import Context


class FilterOps:
    """Define, undefine, list, get and dump network filters (libvirt's ``nwfilter-*``)."""

    ctx: Context

    # ------------------------------------------------------------------------- queries

    def nwfilter_list(self) -> list[Filter]:
        """Every filter, sorted by name (a fresh directory first gets the 24 built-ins).

        >>> sorted(f.name for f in client.nwfilter_list())[:1]  # doctest: +SKIP
        ['allow-arp']
        """
        return sorted(self._read_filters().values(), key=lambda f: f.name)

    def nwfilter_get(self, name_or_uuid: str) -> Filter:
        """The filter with that name (or else that UUID); NotFoundError if none."""
        return FilterStore.get(name_or_uuid, self._read_filters())

    def nwfilter_dumpxml(self, name_or_uuid: str) -> str:
        """The filter's XML, as libvirt writes it (``virsh nwfilter-dumpxml``)."""
        return write_filter(self.nwfilter_get(name_or_uuid))

    # ------------------------------------------------------------------------- changes

    def nwfilter_define(self, xml: str | bytes, file: str | None = None) -> Filter:
        """Create a filter, or update the filter of that name; return it as stored.

        ``file`` only names the document in error messages. Refused (nothing changes): invalid
        XML, a UUID another filter has, a name another UUID has, a reference loop. Without
        ``<uuid>`` an existing filter keeps its UUID.
        """
        with self.ctx.lock():
            store = self._filter_store()
            filters = self._locked_filters()
            new = store.parse(xml, file, filters)
            store.define(new, filters, self._filters_hook(), save=not self.ctx.dry_run)
            return new

    def nwfilter_undefine(self, name_or_uuid: str) -> Filter:
        """Remove a filter; refused (InUseError) while another filter or a port uses it."""
        with self.ctx.lock():
            store = self._filter_store()
            filters = self._locked_filters()
            return store.undefine(
                name_or_uuid, filters, self._filters_hook(), save=not self.ctx.dry_run
            )

    # ------------------------------------------------------------------------- internals

    def _filter_store(self) -> FilterStore:
        store = self.ctx.cache.get("filter_store")
        if store is None:
            store = self.ctx.cache["filter_store"] = FilterStore(self.ctx.paths.nwfilter_dir)
        return store

    def _filters_hook(self) -> BeforeSave | None:
        return getattr(self, "_filters_changed", None)

    def _locked_filters(self) -> FilterMap:
        """All filters; the caller holds the exclusive lock (installs built-ins on first use).

        For the binding engine too: call it inside ``with self.ctx.lock():``.
        """
        store = self._filter_store()
        if self.ctx.dry_run:
            return store.preview()
        store.setup()
        return store.load(write_back=True)

    def _read_filters(self) -> FilterMap:
        """All filters, read under the shared lock (the exclusive one on a fresh directory)."""
        store = self._filter_store()
        if self.ctx.held == "exclusive":
            return self._locked_filters()
        if store.needs_setup() and self.ctx.held is None and not self.ctx.dry_run:
            with self.ctx.lock():
                return self._locked_filters()
        with self.ctx.lock(shared=True):
            return store.preview()
