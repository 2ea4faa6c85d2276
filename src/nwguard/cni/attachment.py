"""A container's interface behind a filter: the runtime-neutral part of the plugins.

A runtime front end (CNI today) finds the :class:`Attachment` in what the runtime gives it;
this module turns it into a filter binding on the host-side port and creates, checks and
removes that binding through a :class:`~nwguard.api.Client`. The binding's owner is named
after the container and its interface (:func:`owner_name`), so removal finds it even when
the runtime no longer knows the port (the veth is gone, no previous result).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from nwguard.errors import NwguardError
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import FilterRef, make_params

if TYPE_CHECKING:
    from nwguard.api import Client

OWNER_PREFIX = "cni:"
# uuid5 namespace of the owners' UUIDs: the same container and interface give the same UUID.
_OWNER_NS = uuid.UUID("5b0c1d6e-6f1e-4c8a-9d4e-2f7a1c3b9e10")


class AttachmentError(NwguardError):
    """The binding of an attachment is missing or differs from what the runtime says."""

    code = "attachment"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One container interface as the host sees it: ``port`` is the host side (the veth)."""

    container_id: str
    ifname: str
    port: str
    mac: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()


def owner_name(container_id: str, ifname: str) -> str:
    """The binding owner of a container's interface.

    >>> owner_name("3f2a", "eth0")
    'cni:3f2a:eth0'
    """
    return f"{OWNER_PREFIX}{container_id}:{ifname}"


def owner_uuid(container_id: str, ifname: str) -> str:
    """A UUID derived from the owner name (stable across ADD, CHECK and DEL)."""
    return str(uuid.uuid5(_OWNER_NS, owner_name(container_id, ifname)))


def binding_for(
    att: Attachment, filter_name: str, params: Mapping[str, str | Sequence[str]]
) -> FilterBinding:
    """The binding of ``att``: ``params`` plus ``MAC`` and ``IP`` (``IPV6``) from the
    attachment; a parameter the configuration gives explicitly wins.

    >>> b = binding_for(Attachment("c1", "eth0", "veth1", "0a:58:0a:58:00:02", ("10.88.0.2",)),
    ...                 "clean-traffic", {"CTRL_IP_LEARNING": "none"})
    >>> b.portdev, b.params()["IP"], b.params()["MAC"]
    ('veth1', ('10.88.0.2',), ('0a:58:0a:58:00:02',))
    """
    merged: dict[str, str | Sequence[str]] = {"MAC": att.mac}
    if att.ipv4:
        merged["IP"] = att.ipv4
    if att.ipv6:
        merged["IPV6"] = att.ipv6
    merged.update(params)
    return FilterBinding(
        owner_name(att.container_id, att.ifname),
        owner_uuid(att.container_id, att.ifname),
        att.port,
        att.mac,
        FilterRef(filter_name, make_params(dict(merged))),
    )


def owned(client: Client, container_id: str, ifname: str) -> list[FilterBinding]:
    """The bindings of this container interface (normally none or one)."""
    name = owner_name(container_id, ifname)
    return [b for b in client.nwfilter_binding_list() if b.owner_name == name]


def attach(client: Client, binding: FilterBinding) -> None:
    """Create ``binding``; its rules are in force on return.

    A binding of the same owner on another port, and a plugin binding left on this port by
    a container that is gone (the runtime just created the port afresh), are removed first.
    """
    from nwguard.xmlio.binding_xml import write_binding

    for old in client.nwfilter_binding_list():
        same_owner = old.owner_name == binding.owner_name
        stale = old.portdev == binding.portdev and old.owner_name.startswith(OWNER_PREFIX)
        if same_owner or stale:
            client.nwfilter_binding_delete(old.portdev)
    client.nwfilter_binding_create(write_binding(binding))


def detach(client: Client, container_id: str, ifname: str) -> list[str]:
    """Remove the container interface's bindings; return their ports (none: nothing to do)."""
    from nwguard.errors import NotFoundError

    ports = []
    for b in owned(client, container_id, ifname):
        try:
            client.nwfilter_binding_delete(b.portdev)
        except NotFoundError:
            pass  # removed meanwhile (a concurrent DEL): what we wanted
        ports.append(b.portdev)
    return ports


class KernelView(Protocol):
    """The dispatch entries in the kernel: ``{role: {port: chain}}``."""

    def dispatch(self) -> dict[str, dict[str, str]]: ...


def check(
    client: Client, expected: FilterBinding, kernel: KernelView, applied: Mapping[str, str]
) -> None:
    """Raise :class:`AttachmentError` unless ``expected`` is bound and its rules are in force.

    ``applied`` is the port's dispatch as nwguard last committed it (``{role: chain}``); the
    kernel must send the port's traffic to exactly those chains.
    """
    found = owned(client, *_owner_parts(expected.owner_name))
    if not found:
        raise AttachmentError(f"no filter binding for {expected.owner_name}")
    b = found[0]
    if b != expected:
        raise AttachmentError(
            f"the filter binding of {expected.owner_name} differs: port {b.portdev}, "
            f"MAC {b.mac}, filter {b.filterref.filter} {dict(b.filterref.params)}; expected "
            f"port {expected.portdev}, MAC {expected.mac}, filter {expected.filterref.filter} "
            f"{dict(expected.filterref.params)}"
        )
    if not applied:
        raise AttachmentError(f"port {b.portdev} has no rules in nwguard's applied state")
    in_kernel = kernel.dispatch()
    for role, chain in sorted(applied.items()):
        got = in_kernel.get(role, {}).get(b.portdev)
        if got != chain:
            raise AttachmentError(
                f"port {b.portdev}: the kernel's {role} dispatch goes to {got or 'nothing'}, "
                f"not to {chain}"
            )


def _owner_parts(name: str) -> tuple[str, str]:
    cid, _, ifname = name.removeprefix(OWNER_PREFIX).rpartition(":")
    return cid, ifname
