"""The port-filter state nwguard wants, and the batch that moves between two states (pure).

A :class:`KernelState` is the union of every port's :class:`Contribution`. Because chains are
named by their content, diffing is by name: new chains are added, unused ones deleted, and
ports only change set elements and dispatch entries. Every change is one
:class:`~nwguard.ir.ports.PortBatch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nwguard.ir.nodes import CtState, Value
from nwguard.ir.ports import (
    ROLES,
    ChainRules,
    Contribution,
    DispatchEntries,
    FilterChain,
    FilterRule,
    IpLayer,
    KeyPart,
    PortBatch,
    SlotElements,
    SlotSet,
)
from nwguard.records import MutableRecord

L4_ROLES = frozenset({"l4o", "l4i"})


def needs_ip_hooks(rules: Iterable[FilterRule]) -> bool:
    """Whether a chain's rules need bridged IP to pass the IP hooks: they read the
    connection state (a backend may copy it from conntrack there) or reject (done there)."""
    return any(
        r.verdict.kind == "reject" or any(isinstance(m, CtState) for m in r.matches) for r in rules
    )


_NEEDS_HOOKS: dict[str, bool] = {}  # chain name (a hash of its rules) -> needs_ip_hooks


def chain_needs_ip_hooks(name: str, rules: tuple[FilterRule, ...]) -> bool:
    """:func:`needs_ip_hooks` of a chain, remembered by its name (a hash of its rules)."""
    need = _NEEDS_HOOKS.get(name)
    if need is None:
        need = _NEEDS_HOOKS[name] = needs_ip_hooks(rules)
    return need


def uses_ip_layer(c: Contribution) -> bool:
    """Whether a port needs the IP-layer part of the fixed layout (:class:`IpLayer`): it has
    IP-layer rules, or rules that need the IP hooks."""
    return bool(c.dispatch.keys() & L4_ROLES) or any(
        chain_needs_ip_hooks(n, r) for n, r in c.chains.items()
    )


class KernelState(MutableRecord):
    """Everything of nwguard's in ``bridge nwguard`` beyond the fixed layout.

    ``refs`` counts the ports using each chain and set, so adding or removing one port costs
    time in the number of templates, not of ports; ``ip_ports`` the ports that need the
    IP-layer part of the layout (:func:`uses_ip_layer`). A
    :class:`~nwguard.records.MutableRecord` (no ``dataclasses`` at start-up).
    """

    __slots__ = ("chains", "ip_ports", "ports", "refs", "sets")
    _fields = ("chains", "sets", "ports", "refs", "ip_ports")

    def __init__(
        self,
        chains: dict[str, tuple[FilterRule, ...]] | None = None,
        sets: dict[str, tuple[KeyPart, ...]] | None = None,
        ports: dict[str, Contribution] | None = None,
        refs: dict[str, int] | None = None,
        ip_ports: int = 0,
    ) -> None:
        self.chains = {} if chains is None else chains
        self.sets = {} if sets is None else sets
        self.ports = {} if ports is None else ports
        self.refs = {} if refs is None else refs
        self.ip_ports = ip_ports

    @property
    def ip_layer(self) -> bool:
        return self.ip_ports > 0

    def with_port(self, port: str, contrib: Contribution | None) -> KernelState:
        """A new state where ``port`` has ``contrib`` (None: the port is gone)."""
        return self.with_ports({port: contrib})

    def with_ports(self, changes: Mapping[str, Contribution | None]) -> KernelState:
        """A new state where each port of ``changes`` has its contribution (None: gone), as
        ``with_port`` one after another would make it, copying the state once."""
        # ports.copy(): a loaded state's ports decode on access (state.applied.PortParts)
        chains, sets, refs, ports = (
            dict(self.chains),
            dict(self.sets),
            dict(self.refs),
            self.ports.copy(),
        )
        ip_ports = self.ip_ports
        for port, contrib in changes.items():
            old = ports.pop(port, None)
            if old is not None:
                ip_ports -= uses_ip_layer(old)
                for name in (*old.chains, *old.sets):
                    refs[name] -= 1
                    if not refs[name]:
                        del refs[name]
                        chains.pop(name, None)
                        sets.pop(name, None)
            if contrib is not None:
                ports[port] = contrib
                ip_ports += uses_ip_layer(contrib)
                for name in (*contrib.chains, *contrib.sets):
                    refs[name] = refs.get(name, 0) + 1
                chains.update(contrib.chains)
                sets.update(contrib.sets)
        return KernelState(chains, sets, ports, refs, ip_ports)

    @classmethod
    def from_ports(cls, ports: dict[str, Contribution]) -> KernelState:
        """The state of exactly these ports."""
        state = cls()
        for port, c in ports.items():
            state = state._add(port, c)
        return state

    def _add(self, port: str, c: Contribution) -> KernelState:
        self.ports[port] = c
        self.ip_ports += uses_ip_layer(c)
        for name in (*c.chains, *c.sets):
            self.refs[name] = self.refs.get(name, 0) + 1
        self.chains.update(c.chains)
        self.sets.update(c.sets)
        return self

    def elements(self) -> dict[str, set[tuple[Value, ...]]]:
        out: dict[str, set[tuple[Value, ...]]] = {}
        for c in self.ports.values():
            for s, keys in c.elements.items():
                out.setdefault(s, set()).update(tuple(k) for k in keys)
        return out


def diff(old: KernelState, new: KernelState, changed_ports: set[str] | None = None) -> PortBatch:
    """The batch that turns ``old`` into ``new`` (only ``changed_ports`` differ, if given)."""
    batch = PortBatch()
    if new.ip_layer and not old.ip_layer:
        batch.add(IpLayer())
    for name in sorted(new.sets.keys() - old.sets.keys()):
        batch.add(SlotSet(name, new.sets[name]))
    added_chains = sorted(new.chains.keys() - old.chains.keys())
    for name in added_chains:
        batch.add(FilterChain(name))
    for name in added_chains:
        if new.chains[name]:
            batch.add(ChainRules(name, new.chains[name]))
    ports = changed_ports if changed_ports is not None else old.ports.keys() | new.ports.keys()
    add_el, del_el = _element_changes(old, new, ports)
    for s in sorted(add_el):
        batch.add(SlotElements(s, _sorted(add_el[s])))
    _dispatch_changes(batch, old, new, ports)
    for s in sorted(del_el):
        if s in new.sets:
            batch.delete(SlotElements(s, _sorted(del_el[s])))
    removed = sorted(old.chains.keys() - new.chains.keys())
    for name in removed:
        batch.flush(FilterChain(name))
    for name in sorted(old.sets.keys() - new.sets.keys()):  # no rule uses them once flushed
        batch.delete(SlotSet(name, old.sets[name]))
    for name in removed:
        batch.delete(FilterChain(name))
    if old.ip_layer and not new.ip_layer:
        batch.delete(IpLayer())
    return batch


def _sorted(keys: set[tuple[Value, ...]]) -> tuple[tuple[Value, ...], ...]:
    # one type per key position (a set's keys are alike), so tuples compare
    return tuple(sorted(keys))


Element = tuple[str, tuple[Value, ...]]


def _port_elements(state: KernelState, port: str) -> set[Element]:
    c = state.ports.get(port)
    if c is None:
        return set()
    return {(s, tuple(k)) for s, keys in c.elements.items() for k in keys}


def _element_changes(
    old: KernelState, new: KernelState, ports: Iterable[str]
) -> tuple[dict[str, set[tuple[Value, ...]]], dict[str, set[tuple[Value, ...]]]]:
    add: dict[str, set[tuple[Value, ...]]] = {}
    delete: dict[str, set[tuple[Value, ...]]] = {}
    for port in ports:
        before, after = _port_elements(old, port), _port_elements(new, port)
        for s, k in after - before:
            add.setdefault(s, set()).add(k)
        for s, k in before - after:
            delete.setdefault(s, set()).add(k)
    return add, delete


def _dispatch_changes(
    batch: PortBatch, old: KernelState, new: KernelState, ports: Iterable[str]
) -> None:
    for role in ROLES:
        drop, put = [], []
        for port in sorted(ports):
            a = old.ports[port].dispatch.get(role) if port in old.ports else None
            b = new.ports[port].dispatch.get(role) if port in new.ports else None
            if a == b:
                continue
            if a is not None:
                drop.append((port, a))
            if b is not None:
                put.append((port, b))
        if drop:
            batch.delete(DispatchEntries(role, tuple(drop)))
        if put:
            batch.add(DispatchEntries(role, tuple(put)))


def full(state: KernelState) -> PortBatch:
    """Replace all of nwguard's port filtering with ``state``, atomically (one transaction)."""
    batch = diff(KernelState(), state)
    batch.reset = True
    return batch
