"""A typed IR of nftables objects that mirrors the libnftables JSON schema.

Small immutable records, each with one ``to_json()``. Compilers build these; backends render
and send them. Nothing here does I/O.

>>> r = Rule("bridge", "t", "c", (Match(Payload("ip", "saddr"), "10.0.0.1", "!="), Verdict("drop")))
>>> r.to_json()["rule"]["expr"][1]
{'drop': None}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from nwguard.records import Record

# ----------------------------------------------------------------------------- expressions

Value = Union[str, int, "Expr"]


class Expr(Record):
    def to_json(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def _j(v: Value) -> Any:
    return v.to_json() if isinstance(v, Expr) else v


class Payload(Expr):
    """A named header field: ``Payload("ip", "saddr")`` is ``ip saddr``."""

    protocol: str
    field: str

    def to_json(self) -> Any:
        return {"payload": {"protocol": self.protocol, "field": self.field}}


class RawPayload(Expr):
    """Raw bits: base ``ll``, ``nh`` or ``th``; offset and length in bits."""

    base: str
    offset: int
    length: int

    def to_json(self) -> Any:
        return {"payload": {"base": self.base, "offset": self.offset, "len": self.length}}


class Meta(Expr):
    key: str

    def to_json(self) -> Any:
        return {"meta": {"key": self.key}}


class Ct(Expr):
    key: str
    dir: str | None = None

    def to_json(self) -> Any:
        d: dict[str, Any] = {"key": self.key}
        if self.dir:
            d["dir"] = self.dir
        return {"ct": d}


class TcpOption(Expr):
    """``tcp option @kind,0,8`` existence is expressed by matching the kind byte."""

    kind: int

    def to_json(self) -> Any:
        return {"tcp option": {"base": self.kind, "offset": 0, "len": 8}}


class Concat(Expr):
    items: tuple[Value, ...]

    def to_json(self) -> Any:
        return {"concat": [_j(i) for i in self.items]}


class Prefix(Expr):
    addr: str
    length: int

    def to_json(self) -> Any:
        return {"prefix": {"addr": self.addr, "len": self.length}}


class Range(Expr):
    low: Value
    high: Value

    def to_json(self) -> Any:
        return {"range": [_j(self.low), _j(self.high)]}


class SetRef(Expr):
    name: str

    def to_json(self) -> Any:
        return "@" + self.name


class AnonSet(Expr):
    items: tuple[Value, ...]

    def to_json(self) -> Any:
        return {"set": [_j(i) for i in self.items]}


class And(Expr):
    """Bitwise ``left & mask``."""

    left: Value
    mask: Value

    def to_json(self) -> Any:
        return {"&": [_j(self.left), _j(self.mask)]}


class Or(Expr):
    left: Value
    bits: Value

    def to_json(self) -> Any:
        return {"|": [_j(self.left), _j(self.bits)]}


class VerdictValue(Expr):
    """A verdict used as a map value (``goto chain``)."""

    kind: str
    target: str | None = None

    def to_json(self) -> Any:
        return {self.kind: {"target": self.target} if self.target else None}


# ----------------------------------------------------------------------------- statements


class Stmt(Record):
    def to_json(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Match(Stmt):
    left: Value
    right: Value
    op: str = "=="

    def to_json(self) -> Any:
        return {"match": {"op": self.op, "left": _j(self.left), "right": _j(self.right)}}


class Verdict(Stmt):
    """``accept``, ``drop``, ``return``, ``continue``, ``jump X``, ``goto X``."""

    kind: str
    target: str | None = None

    def to_json(self) -> Any:
        return {self.kind: {"target": self.target} if self.target else None}


class VMap(Stmt):
    key: Value
    map_name: str

    def to_json(self) -> Any:
        return {"vmap": {"key": _j(self.key), "data": "@" + self.map_name}}


class MangleMark(Stmt):
    """``meta mark set <value>``."""

    value: Value

    def to_json(self) -> Any:
        return {"mangle": {"key": {"meta": {"key": "mark"}}, "value": _j(self.value)}}


class Counter(Stmt):
    def to_json(self) -> Any:
        return {"counter": None}


class Reject(Stmt):
    type: str | None = None  # "tcp reset", "icmpx", ...
    expr: str | None = None

    def to_json(self) -> Any:
        if self.type is None:
            return {"reject": None}
        d: dict[str, Any] = {"type": self.type}
        if self.expr:
            d["expr"] = self.expr
        return {"reject": d}


class Masquerade(Stmt):
    port_low: int | None = None
    port_high: int | None = None

    def to_json(self) -> Any:
        if self.port_low is None:
            return {"masquerade": None}
        return {"masquerade": {"port": {"range": [self.port_low, self.port_high]}}}


class Snat(Stmt):
    addr: Value
    family: str = "ip"
    port: Value | None = None

    def to_json(self) -> Any:
        d: dict[str, Any] = {"addr": _j(self.addr), "family": self.family}
        if self.port is not None:
            d["port"] = _j(self.port)
        return {"snat": d}


class Comment(Stmt):
    """Not an nft statement: carried to the rule's ``comment`` field by :class:`Rule`."""

    text: str

    def to_json(self) -> Any:  # pragma: no cover - folded into Rule
        raise TypeError("Comment is rendered by Rule")


# ----------------------------------------------------------------------------- objects

# libnftables 1.0.6 reads ``typeof`` sets only in nft syntax: a set carrying this key is
# created that way by the backend before the JSON batch runs (see backends/nft_exec.py).
TYPEOF_KEY = "nwguard_typeof"


class Table(Record):
    family: str
    name: str
    comment: str | None = None

    def to_json(self) -> Any:
        d: dict[str, Any] = {"family": self.family, "name": self.name}
        if self.comment:
            d["comment"] = self.comment
        return {"table": d}


class Chain(Record):
    family: str
    table: str
    name: str
    type: str | None = None
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None

    def to_json(self) -> Any:
        d: dict[str, Any] = {"family": self.family, "table": self.table, "name": self.name}
        if self.hook:
            d.update(type=self.type or "filter", hook=self.hook, prio=self.prio or 0)
            d["policy"] = self.policy or "accept"
        return {"chain": d}


class Rule(Record):
    family: str
    table: str
    chain: str
    stmts: tuple[Stmt, ...]

    def to_json(self) -> Any:
        d: dict[str, Any] = {"family": self.family, "table": self.table, "chain": self.chain}
        comments = [s.text for s in self.stmts if isinstance(s, Comment)]
        d["expr"] = [s.to_json() for s in self.stmts if not isinstance(s, Comment)]
        if comments:
            d["comment"] = comments[0]
        return {"rule": d}


class Set(Record):
    """A named set (``map_type`` given: a map, e.g. ``verdict``)."""

    family: str
    table: str
    name: str
    key_type: tuple[str, ...]
    map_type: str | None = None
    flags: tuple[str, ...] = ()
    typeof: str | None = None  # a key with raw loads: created in nft syntax by the backend

    def to_json(self) -> Any:
        d: dict[str, Any] = {
            "family": self.family,
            "table": self.table,
            "name": self.name,
            "type": list(self.key_type) if len(self.key_type) > 1 else self.key_type[0],
        }
        if self.typeof:
            d[TYPEOF_KEY] = self.typeof
        if self.map_type:
            d["map"] = self.map_type
        if self.flags:
            d["flags"] = list(self.flags)
        return {"map" if self.map_type else "set": d}


class Elements(Record):
    """Elements of a set (``values`` None) or a map (one value per key)."""

    family: str
    table: str
    name: str
    keys: tuple[Any, ...]
    values: tuple[Value, ...] | None = None

    def to_json(self) -> Any:
        def key(k: Any) -> Any:
            return {"concat": list(k)} if isinstance(k, tuple) else _j(k)

        if self.values is None:
            elem = [key(k) for k in self.keys]
        else:
            elem = [[key(k), _j(v)] for k, v in zip(self.keys, self.values, strict=True)]
        return {"element": {"family": self.family, "table": self.table, "name": self.name, "elem": elem}}


Object = Table | Chain | Rule | Set | Elements


class Command(Record):
    """One command of a batch: ``add``, ``create``, ``delete``, ``flush`` or ``destroy``."""

    verb: str
    obj: Object

    def to_json(self) -> Any:
        return {self.verb: self.obj.to_json()}


@dataclass
class Batch:
    """An ordered list of commands applied as one all-or-nothing transaction."""

    commands: list[Command] = field(default_factory=list)

    def add(self, obj: Object) -> None:
        self.commands.append(Command("add", obj))

    def delete(self, obj: Object) -> None:
        self.commands.append(Command("delete", obj))

    def flush(self, obj: Object) -> None:
        self.commands.append(Command("flush", obj))

    def extend(self, other: Batch) -> None:
        self.commands.extend(other.commands)

    def __bool__(self) -> bool:
        return bool(self.commands)

    def to_json(self) -> dict[str, Any]:
        return {"nftables": [c.to_json() for c in self.commands]}
