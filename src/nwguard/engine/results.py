"""What a change returns: the batch it sent to the kernel (or, with dry_run, would send).

The one dry-run channel: every operation that changes kernel state returns a :class:`Change`
(or a subclass that also carries the object it defined), so ``--dry-run`` prints
``result.batch`` and nothing is kept on the side. Records, not dataclasses: the
``nwfilter-*`` commands import this module on every run. They cross the daemon's socket
field by field (:mod:`nwguard.daemon.protocol`).

>>> Change(None, False)
Change(batch=None, applied=False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nwguard.records import ValueRecord

if TYPE_CHECKING:
    from nwguard.engine.interfaces import InterfaceRecord
    from nwguard.model.binding import FilterBinding
    from nwguard.model.filter import Filter

Batch = Any
"""Opaque here: the backend's batch (an nftables JSON document today). None: nothing to send."""


class Change(ValueRecord):
    """What a change sent; ``applied`` is False with dry_run (nothing was changed)."""

    batch: Batch
    applied: bool


class FilterChange(Change):
    """``nwfilter_define`` / ``nwfilter_undefine``: the filter, and the rebuild of bound ports."""

    filter: Filter
    warnings: tuple[str, ...] = ()  # lenient define: what was ignored (file, line, name)


class BindingChange(Change):
    """``nwfilter_binding_create``: the binding and the batch that put its rules in force."""

    binding: FilterBinding


class InterfaceChange(Change):
    """``iface_attach``: the attached interface and its binding's batch (None without filter)."""

    interface: InterfaceRecord
