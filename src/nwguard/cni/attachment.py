"""A container's interface behind a filter: the runtime-neutral part of the plugins.

A runtime front end (CNI today) finds the :class:`Attachment` in what the runtime gives it;
this module turns it into a filter binding on the host-side port and creates, checks and
removes that binding in a :class:`BindingStore`: nwguard in this process
(:class:`ClientStore`) or nwguardd over its socket (:mod:`nwguard.cni.fast`). The binding's
owner is named after the container and its interface (:func:`owner_name`), so removal finds
it even when the runtime no longer knows the port (the veth is gone, no previous result).

Importing this module loads no nwguard model, engine or lxml (the plugin runs once per
container and call: start-up time is the cost); :func:`binding_for` and :func:`check` import
what they need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from nwguard.errors import NotFoundError, NwguardError

if TYPE_CHECKING:
    from nwguard.api import Client
    from nwguard.model.binding import FilterBinding

OWNER_PREFIX = "cni:"
# uuid5 namespace of the owners' UUIDs: the same container and interface give the same UUID.
_OWNER_NS = "5b0c1d6e-6f1e-4c8a-9d4e-2f7a1c3b9e10"

Params = Mapping[str, "str | Sequence[str]"]


class AttachmentError(NwguardError):
    """The binding of an attachment is missing or differs from what the runtime says."""

    code = "attachment"


class Attachment(NamedTuple):
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
    import uuid  # not at the top: a DEL does without it (it loads platform, 1 ms)

    return str(uuid.uuid5(uuid.UUID(_OWNER_NS), owner_name(container_id, ifname)))


def binding_params(att: Attachment, params: Params) -> dict[str, tuple[str, ...]]:
    """``params`` plus ``MAC`` and ``IP`` (``IPV6``) from the attachment; a parameter the
    configuration gives explicitly wins.

    >>> binding_params(Attachment("c1", "eth0", "veth1", "0a:58:0a:58:00:02", ("10.88.0.2",)),
    ...                {"CTRL_IP_LEARNING": "none"})
    {'MAC': ('0a:58:0a:58:00:02',), 'IP': ('10.88.0.2',), 'CTRL_IP_LEARNING': ('none',)}
    """
    merged: dict[str, tuple[str, ...]] = {"MAC": (att.mac,)}
    if att.ipv4:
        merged["IP"] = tuple(att.ipv4)
    if att.ipv6:
        merged["IPV6"] = tuple(att.ipv6)
    for name, value in params.items():
        merged[name] = (value,) if isinstance(value, str) else tuple(value)
    return merged


def binding_xml(att: Attachment, filter_name: str, params: Params) -> str:
    """The ``<filterbinding>`` of ``att`` (what :func:`binding_for` builds, as XML text)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("filterbinding")
    owner = ET.SubElement(root, "owner")
    ET.SubElement(owner, "name").text = owner_name(att.container_id, att.ifname)
    ET.SubElement(owner, "uuid").text = owner_uuid(att.container_id, att.ifname)
    ET.SubElement(root, "portdev", name=att.port)
    ET.SubElement(root, "mac", address=att.mac)
    ref = ET.SubElement(root, "filterref", filter=filter_name)
    for name, values in binding_params(att, params).items():
        for value in values:
            ET.SubElement(ref, "parameter", name=name, value=value)
    return ET.tostring(root, encoding="unicode")


def binding_for(att: Attachment, filter_name: str, params: Params) -> FilterBinding:
    """The binding of ``att`` as a model object (:func:`binding_params` are its parameters).

    >>> b = binding_for(Attachment("c1", "eth0", "veth1", "0a:58:0a:58:00:02", ("10.88.0.2",)),
    ...                 "clean-traffic", {"CTRL_IP_LEARNING": "none"})
    >>> b.portdev, b.params()["IP"], b.params()["MAC"]
    ('veth1', ('10.88.0.2',), ('0a:58:0a:58:00:02',))
    """
    from nwguard.model.binding import FilterBinding
    from nwguard.model.filter import FilterRef, make_params

    merged: dict[str, str | Sequence[str]] = dict(binding_params(att, params))
    return FilterBinding(
        owner_name(att.container_id, att.ifname),
        owner_uuid(att.container_id, att.ifname),
        att.port,
        att.mac,
        FilterRef(filter_name, make_params(merged)),
    )


class BindingStore(Protocol):
    """Where the bindings are: nwguard in-process, or nwguardd."""

    def owners(self) -> list[tuple[str, str]]:
        """``(owner name, port)`` of every binding."""
        ...

    def create(self, xml: str) -> None:
        """Create a binding from its XML; its rules are in force on return."""
        ...

    def delete(self, port: str) -> None:
        """Remove the binding of ``port``; NotFoundError if there is none."""
        ...


class ClientStore:
    """The bindings of a :class:`~nwguard.api.Client` (embedded or a daemon proxy)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def owners(self) -> list[tuple[str, str]]:
        return [(b.owner_name, b.portdev) for b in self.client.nwfilter_binding_list()]

    def create(self, xml: str) -> None:
        self.client.nwfilter_binding_create(xml)

    def delete(self, port: str) -> None:
        self.client.nwfilter_binding_delete(port)


def attach(store: BindingStore, att: Attachment, filter_name: str, params: Params) -> None:
    """Bind ``filter_name`` to ``att``; its rules are in force on return.

    A binding of the same owner on another port, and a plugin binding left on this port by
    a container that is gone (the runtime just created the port afresh), are removed first.
    """
    mine = owner_name(att.container_id, att.ifname)
    for owner, port in store.owners():
        if owner == mine or (port == att.port and owner.startswith(OWNER_PREFIX)):
            store.delete(port)
    store.create(binding_xml(att, filter_name, params))


def detach(store: BindingStore, container_id: str, ifname: str) -> list[str]:
    """Remove the container interface's bindings; return their ports (none: nothing to do)."""
    mine = owner_name(container_id, ifname)
    ports = []
    for owner, port in store.owners():
        if owner != mine:
            continue
        try:
            store.delete(port)
        except NotFoundError:
            pass  # removed meanwhile (a concurrent DEL): what we wanted
        ports.append(port)
    return ports


def owned(client: Client, container_id: str, ifname: str) -> list[FilterBinding]:
    """The bindings of this container interface (normally none or one)."""
    name = owner_name(container_id, ifname)
    return [b for b in client.nwfilter_binding_list() if b.owner_name == name]


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
