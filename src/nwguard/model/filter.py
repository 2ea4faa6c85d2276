"""Filters, rules and filter references: pure data.

>>> r = Rule("drop", "out", 500, protocol="ip", attrs=(AttrValue("srcipaddr", VarRef("IP"), True),))
>>> r.variables()
(VarRef(name='IP', index=None, iterator=0),)
"""

from __future__ import annotations

from typing import Any

from nwguard.model.protocols import DEFAULT_RULE_PRIORITY, PROTOCOLS, Layer, Protocol
from nwguard.model.values import VarRef
from nwguard.records import ValueRecord


class AttrValue(ValueRecord):
    """One attribute of a rule's protocol match: typed value or variable, and its negation."""

    name: str
    value: Any
    negated: bool = False


class Rule(ValueRecord):
    action: str
    direction: str
    priority: int = DEFAULT_RULE_PRIORITY
    statematch: bool = True
    protocol: str | None = None  # None: a rule without a protocol element matches every frame
    attrs: tuple[AttrValue, ...] = ()  # in the protocol table's order
    line: int | None = None  # where the rule is in its XML: for explain, not part of equality

    def _key(self) -> tuple[Any, ...]:
        # a reformatted file is the same filter: the line takes no part in equality or hash
        return (self.action, self.direction, self.priority, self.statematch, self.protocol,
                self.attrs)  # fmt: skip

    @property
    def proto(self) -> Protocol | None:
        return PROTOCOLS[self.protocol] if self.protocol else None

    @property
    def layer(self) -> Layer:
        return self.proto.layer if self.proto else Layer.ETHERNET

    def get(self, name: str) -> AttrValue | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None

    def variables(self) -> tuple[VarRef, ...]:
        """Variable references in attribute-table order, each once."""
        seen: list[VarRef] = []
        for a in self.attrs:
            if isinstance(a.value, VarRef) and a.value not in seen:
                seen.append(a.value)
        return tuple(seen)


Params = tuple[tuple[str, tuple[str, ...]], ...]


def make_params(pairs: list[tuple[str, str]] | dict[str, Any]) -> Params:
    """Parameters as a name-sorted tuple of (name, values); repeating a name makes a list."""
    merged: dict[str, list[str]] = {}
    items = pairs.items() if isinstance(pairs, dict) else pairs
    for name, value in items:
        vals = list(value) if isinstance(value, (list, tuple)) else [value]
        merged.setdefault(name, []).extend(str(x) for x in vals)
    return tuple((k, tuple(merged[k])) for k in sorted(merged))


class FilterRef(ValueRecord):
    filter: str
    params: Params = ()

    def param_dict(self) -> dict[str, tuple[str, ...]]:
        return dict(self.params)


Entry = Rule | FilterRef


class Filter(ValueRecord):
    name: str
    uuid: str
    chain: str = "root"
    priority: int = 0  # chain priority
    entries: tuple[Entry, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(e for e in self.entries if isinstance(e, Rule))

    @property
    def refs(self) -> tuple[FilterRef, ...]:
        return tuple(e for e in self.entries if isinstance(e, FilterRef))
