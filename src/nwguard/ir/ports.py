"""The IR of port filtering: what one port needs, and the batch that moves between two states.

A port's filter compiles to *shared* chains of :class:`FilterRule` (named by their content,
so every port bound to the same filter uses the same chains) plus per-port data: elements of
*slot sets* keyed by the port's name, and *dispatch* entries (role → the port's root chain).
Backends render these; the nftables backend into sets and verdict maps, a backend without
sets would expand each slot into the port's literal values.

Roles: ``l2o`` / ``l2i`` are the Ethernet layer for traffic from / to the guest (libvirt's
ebtables ``libvirt-I-`` / ``libvirt-O-`` chains), ``l4o`` / ``l4i`` the IP layer (its
iptables ``FI``+``HI`` / ``FO`` chains).
"""

from __future__ import annotations

from typing import Any

from nwguard.ir.nodes import RawPayload, Stmt, Value, Verdict
from nwguard.records import MutableRecord, ValueRecord

ROLES = ("l2o", "l2i", "l4o", "l4i")
OUT_SIDE = {"l2o": True, "l2i": False, "l4o": True, "l4i": False}

# A slot set's key part: a data type name (``ifname``, ``ether_addr``, ``ipv4_addr``,
# ``ipv6_addr``, ``inet_service``) or raw header bits compared as a number.
KeyPart = str | RawPayload


class Origin(ValueRecord):
    """Where a compiled rule comes from, for errors and ``explain``.

    ``path`` is the ``<filterref>`` chain from the bound filter down to ``filter``; ``index``
    the rule's 1-based position among ``filter``'s rules (as in ``rule[3]``); ``line`` its
    line in the filter's XML when known; ``copy`` which of libvirt's copies of the rule this
    is (``""`` the rule as written, ``mirrored`` the opposite direction's copy).
    """

    filter: str
    path: tuple[str, ...]
    index: int
    line: int | None = None
    copy: str = ""


class FilterRule(ValueRecord):
    """One rule of a port chain: its matches (in order), then its verdict.

    The origin does not take part in equality: two rules that match the same way are the
    same rule in the kernel, whichever filter they came from. Nor does ``label``: on a jump
    to a sub-chain, the filter chain's own name (``ipv4-ip``), which libvirt's layout names
    the port's sub-chain after (``I-vnet0-ipv4-ip``); the nftables backend ignores it.
    """

    matches: tuple[Stmt, ...]
    verdict: Verdict
    origin: Origin | None = None
    label: str | None = None

    def _key(self) -> tuple[Any, ...]:
        return (self.matches, self.verdict)


class Lookup(Stmt):
    """The packet's ``(port name, *fields)`` is (or with ``negated``, is not) in slot set ``set``.

    ``side`` is the port's side: ``out`` (the packet comes from the port) or ``in``.
    """

    side: str
    fields: tuple[Value, ...]
    set: str
    negated: bool = False


# ----------------------------------------------------------------------------- port objects


class SlotSet(ValueRecord):
    """A set of per-port values: keys are ``(port, *parts)``."""

    name: str
    key: tuple[KeyPart, ...]


class FilterChain(ValueRecord):
    """A shared port chain as an object (added empty, flushed, deleted)."""

    name: str


class ChainRules(ValueRecord):
    """The rules appended to a chain, in order."""

    chain: str
    rules: tuple[FilterRule, ...]


class SlotElements(ValueRecord):
    """Elements of a slot set: one ``(port, *values)`` tuple each."""

    set: str
    keys: tuple[tuple[Value, ...], ...]


class DispatchEntries(ValueRecord):
    """Dispatch entries of one role: ``(port, chain)`` — the port's traffic goes to the chain."""

    role: str
    entries: tuple[tuple[str, str], ...]


class IpLayer(ValueRecord):
    """The IP-layer part of a backend's fixed layout, added while some port needs it (IP-layer
    rules, connection state or reject) and deleted with the last such port: a bridge of
    Ethernet-layer-only ports pays for no IP-layer hook (a backend whose layout is per port
    ignores it)."""


PortObject = SlotSet | FilterChain | ChainRules | SlotElements | DispatchEntries | IpLayer


class PortCommand(ValueRecord):
    """``add``, ``delete`` or ``flush`` one port object."""

    verb: str
    obj: PortObject


class PortBatch:
    """One all-or-nothing change of the port filters.

    ``reset``: everything of nwguard's port filtering is replaced by what the commands add
    (a backend recreates its fixed layout first); otherwise the commands change the state
    in force.
    """

    __slots__ = ("commands", "reset")

    def __init__(self, commands: list[PortCommand] | None = None, reset: bool = False) -> None:
        self.commands: list[PortCommand] = commands if commands is not None else []
        self.reset = reset

    def add(self, obj: PortObject) -> None:
        self.commands.append(PortCommand("add", obj))

    def delete(self, obj: PortObject) -> None:
        self.commands.append(PortCommand("delete", obj))

    def flush(self, obj: PortObject) -> None:
        self.commands.append(PortCommand("flush", obj))

    def __bool__(self) -> bool:
        return self.reset or bool(self.commands)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PortBatch)
            and self.reset == other.reset
            and self.commands == other.commands
        )

    def __repr__(self) -> str:
        return f"PortBatch({self.commands!r}, reset={self.reset})"


# ----------------------------------------------------------------------------- a port's part


class Contribution(MutableRecord):
    """What one port needs: its chains and sets (shared with other ports), its elements and
    dispatch entries. ``slots`` says where each set's elements come from (compile time only).

    A :class:`~nwguard.records.MutableRecord` (no ``dataclasses`` at start-up).
    """

    __slots__ = ("chains", "dispatch", "elements", "fallback_rules", "sets", "slots")
    _fields = ("chains", "sets", "elements", "dispatch", "fallback_rules", "slots")

    def __init__(
        self,
        chains: dict[str, tuple[FilterRule, ...]] | None = None,
        sets: dict[str, tuple[KeyPart, ...]] | None = None,
        elements: dict[str, list[tuple[Value, ...]]] | None = None,
        dispatch: dict[str, str] | None = None,  # role -> chain
        fallback_rules: int = 0,  # rules expanded per port because they could not be shared
        slots: dict[str, Any] | None = None,
    ) -> None:
        self.chains = {} if chains is None else chains
        self.sets = {} if sets is None else sets
        self.elements = {} if elements is None else elements
        self.dispatch = {} if dispatch is None else dispatch
        self.fallback_rules = fallback_rules
        self.slots = {} if slots is None else slots
