"""The kernel state nwguard wants, as plain data, and the batch that moves between two states.

A :class:`KernelState` is the union of every port's :class:`Contribution`. Because chains are
named by their content, diffing is by name: new chains are added, unused ones deleted, and
ports only change set elements and dispatch-map entries. Every change is one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nwguard.compile import layout
from nwguard.ir.nodes import Batch, Chain, Command, Elements, Set, Table, VerdictValue
from nwguard.compile.matches import is_raw_key
from nwguard.compile.program import ROLES, Contribution

B, T = layout.BRIDGE, layout.TABLE


class _RawRule:
    """A rule whose expression list is already JSON (from a Contribution)."""

    def __init__(self, chain: str, expr: list[Any]) -> None:
        self.chain, self.expr = chain, expr

    def to_json(self) -> Any:
        return {"rule": {"family": B, "table": T, "chain": self.chain, "expr": self.expr}}


@dataclass
class KernelState:
    """Everything of nwguard's in ``bridge nwguard`` beyond the fixed layout.

    ``refs`` counts the ports using each chain and set, so adding or removing one port costs
    time in the number of templates, not of ports.
    """

    chains: dict[str, list[Any]] = field(default_factory=dict)
    sets: dict[str, list[str]] = field(default_factory=dict)
    ports: dict[str, Contribution] = field(default_factory=dict)
    refs: dict[str, int] = field(default_factory=dict)

    def with_port(self, port: str, contrib: Contribution | None) -> KernelState:
        """A new state where ``port`` has ``contrib`` (None: the port is gone)."""
        chains, sets, refs, ports = dict(self.chains), dict(self.sets), dict(self.refs), dict(self.ports)
        old = ports.pop(port, None)
        if old is not None:
            for name in (*old.chains, *old.sets):
                refs[name] -= 1
                if not refs[name]:
                    del refs[name]
                    chains.pop(name, None)
                    sets.pop(name, None)
        if contrib is not None:
            ports[port] = contrib
            for name in (*contrib.chains, *contrib.sets):
                refs[name] = refs.get(name, 0) + 1
            chains.update(contrib.chains)
            sets.update(contrib.sets)
        return KernelState(chains, sets, ports, refs)

    @classmethod
    def from_ports(cls, ports: dict[str, Contribution], chains: dict[str, list[Any]] | None = None,
                   sets: dict[str, list[str]] | None = None) -> KernelState:
        """The state of exactly these ports (``chains``/``sets``: unused here, kept for callers)."""
        state = cls()
        for port, c in ports.items():
            state = state._add(port, c)
        return state

    def _add(self, port: str, c: Contribution) -> KernelState:
        self.ports[port] = c
        for name in (*c.chains, *c.sets):
            self.refs[name] = self.refs.get(name, 0) + 1
        self.chains.update(c.chains)
        self.sets.update(c.sets)
        return self

    def elements(self) -> dict[str, set[tuple[str, ...]]]:
        out: dict[str, set[tuple[str, ...]]] = {}
        for c in self.ports.values():
            for s, keys in c.elements.items():
                out.setdefault(s, set()).update(tuple(k) for k in keys)
        return out


# the nft expression whose type a set key component has, for ``typeof`` declarations
_TYPEOF_EXPR = {
    "ifname": "iifname", "ether_addr": "ether saddr", "ipv4_addr": "ip saddr",
    "ipv6_addr": "ip6 saddr", "inet_service": "th dport",
}


def make_set(name: str, key_types: list[str]) -> Set:
    """A template set; a key with raw loads (``@nh,64,48``) is declared with ``typeof``."""
    if not any(is_raw_key(t) for t in key_types):
        return Set(B, T, name, tuple(key_types))
    typeof = " . ".join(t if is_raw_key(t) else _TYPEOF_EXPR[t] for t in key_types)
    return Set(B, T, name, tuple(key_types), typeof=typeof)


def _chain(name: str) -> Chain:
    return Chain(B, T, name)


def diff(old: KernelState, new: KernelState, changed_ports: set[str] | None = None) -> Batch:
    """The batch that turns ``old`` into ``new`` (only ``changed_ports`` differ, if given)."""
    batch = Batch()
    for name in sorted(new.sets.keys() - old.sets.keys()):
        batch.add(make_set(name, new.sets[name]))
    added_chains = sorted(new.chains.keys() - old.chains.keys())
    for name in added_chains:
        batch.add(_chain(name))
    for name in added_chains:
        for expr in new.chains[name]:
            batch.commands.append(Command("add", _RawRule(name, expr)))  # type: ignore[arg-type]
    ports = changed_ports if changed_ports is not None else old.ports.keys() | new.ports.keys()
    add_el, del_el = _element_changes(old, new, ports)
    for s in sorted(add_el):
        batch.add(Elements(B, T, s, tuple(sorted(add_el[s]))))
    _dispatch_changes(batch, old, new, ports)
    for s in sorted(del_el):
        if s in new.sets:
            batch.delete(Elements(B, T, s, tuple(sorted(del_el[s]))))
    removed = sorted(old.chains.keys() - new.chains.keys())
    for name in removed:
        batch.flush(_chain(name))
    for name in sorted(old.sets.keys() - new.sets.keys()):  # no rule uses them once flushed
        batch.delete(make_set(name, old.sets[name]))
    for name in removed:
        batch.delete(_chain(name))
    return batch


def _port_elements(state: KernelState, port: str) -> set[tuple[str, tuple[str, ...]]]:
    c = state.ports.get(port)
    if c is None:
        return set()
    return {(s, tuple(k)) for s, keys in c.elements.items() for k in keys}


def _element_changes(old: KernelState, new: KernelState, ports: Any) -> tuple[dict, dict]:
    add: dict[str, set] = {}
    delete: dict[str, set] = {}
    for port in ports:
        before, after = _port_elements(old, port), _port_elements(new, port)
        for s, k in after - before:
            add.setdefault(s, set()).add(k)
        for s, k in before - after:
            delete.setdefault(s, set()).add(k)
    return add, delete


def _dispatch_changes(batch: Batch, old: KernelState, new: KernelState, ports: Any) -> None:
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
            batch.delete(_vmap(role, drop))
        if put:
            batch.add(_vmap(role, put))


def _vmap(role: str, entries: list[tuple[str, str]]) -> Elements:
    return Elements(B, T, role, tuple(p for p, _ in entries),
                    tuple(VerdictValue("goto", c) for _, c in entries))


def full(state: KernelState) -> Batch:
    """Replace nwguard's tables wholesale with ``state``, atomically (one transaction)."""
    batch = Batch()
    for table in layout.tables():
        batch.add(Table(table.family, table.name))
        batch.delete(Table(table.family, table.name))
        batch.add(table)
    for obj in layout.bridge_base() + layout.inet_base():
        batch.add(obj)
    batch.extend(diff(KernelState(), state))
    return batch
