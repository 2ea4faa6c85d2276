"""The typed IR: expressions, statements, kernel objects and batches, as small immutable records.

Compilers build these; a backend alone turns them into its own syntax (the nftables backend
into libnftables JSON: ``nwguard.backends.nft.render``). Nothing here renders, does I/O, or
knows a backend's spelling.

>>> r = Rule("bridge", "t", "c", (Match(Payload("ip", "saddr"), "10.0.0.1", "!="), Verdict("drop")))
>>> r.stmts[0].op, r.stmts[1].kind
('!=', 'drop')
"""

from __future__ import annotations

from typing import Union

from nwguard.records import ValueRecord

# ----------------------------------------------------------------------------- expressions

Value = Union[str, int, "Expr"]


class Expr(ValueRecord):
    """What a statement reads or compares: a packet field, a constant form, a set."""


class Payload(Expr):
    """A named header field: ``Payload("ip", "saddr")`` is the IPv4 source address."""

    protocol: str
    field: str


class RawPayload(Expr):
    """Raw bits of a header: base ``ll`` (link), ``nh`` (network) or ``th`` (transport);
    offset and length in bits."""

    base: str
    offset: int
    length: int


class Meta(Expr):
    """Packet metadata: ``iifname``, ``oifname``, ``l4proto``, ``mark``, ``nfproto``, ..."""

    key: str


class Ct(Expr):
    """A connection-tracking key (``state``, ``direction``) read from the kernel's conntrack."""

    key: str
    dir: str | None = None


class TcpOption(Expr):
    """The kind byte of a TCP option: compared with the kind, it means "the option is present"."""

    kind: int


class Concat(Expr):
    items: tuple[Value, ...]


class Prefix(Expr):
    addr: str
    length: int


class Range(Expr):
    low: Value
    high: Value


class Masked(Expr):
    """A value compared under a mask: ``field & mask == value`` (``value`` already masked)."""

    value: Value
    mask: Value


class SetRef(Expr):
    name: str


class AnonSet(Expr):
    items: tuple[Value, ...]


class And(Expr):
    """Bitwise ``left & mask`` (on the left of a match, or as a value to store)."""

    left: Value
    mask: Value


class Or(Expr):
    left: Value
    bits: Value


class VerdictValue(Expr):
    """A verdict used as a map value (``goto chain``)."""

    kind: str
    target: str | None = None


# ----------------------------------------------------------------------------- statements


class Stmt(ValueRecord):
    """One step of a rule: a match, a verdict, or an action."""


class Match(Stmt):
    """``left op right``; ``op`` is ``==``, ``!=`` or ``in`` (membership of a set)."""

    left: Value
    right: Value
    op: str = "=="


class CtState(Stmt):
    """The packet's connection is in one of ``states`` (NEW, ESTABLISHED, RELATED, INVALID),
    seen in ``direction`` (``original``, ``reply`` or None: either).

    Backend-neutral on purpose: iptables spells it ``-m conntrack``; nftables' bridge family
    has no conntrack on this kernel and reads bits that its inet table copies into the mark.
    """

    states: tuple[str, ...]
    direction: str | None = None


class IpSetMatch(Stmt):
    """The packet is in the externally managed ipset ``name``; ``flags`` says, one ``src`` or
    ``dst`` word per dimension of the set, which of its addresses (and ports) are looked up.

    iptables spells it ``-m set --match-set``; nftables cannot read an ipset.
    """

    name: str
    flags: tuple[str, ...]


class ConnLimit(Stmt):
    """More than ``above`` connections come from the packet's source address (``negated``:
    at most that many). iptables spells it ``-m connlimit``; it needs conntrack."""

    above: int
    negated: bool = False


class Verdict(Stmt):
    """``accept``, ``drop``, ``reject``, ``return``, ``continue``, ``jump X``, ``goto X``."""

    kind: str
    target: str | None = None


class VMap(Stmt):
    key: Value
    map_name: str


class MangleMark(Stmt):
    """Set the packet mark to ``value``."""

    value: Value


class Counter(Stmt):
    pass


class Reject(Stmt):
    type: str | None = None  # "tcp reset", "icmpx", ...
    expr: str | None = None


class Masquerade(Stmt):
    port_low: int | None = None
    port_high: int | None = None


class Snat(Stmt):
    addr: Value
    family: str = "ip"
    port: Value | None = None


# ----------------------------------------------------------------------------- objects


class Table(ValueRecord):
    family: str
    name: str
    comment: str | None = None


class Chain(ValueRecord):
    """A chain; with ``hook`` a base chain (type, priority and policy then apply)."""

    family: str
    table: str
    name: str
    type: str | None = None
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None


class Rule(ValueRecord):
    family: str
    table: str
    chain: str
    stmts: tuple[Stmt, ...]
    comment: str | None = None


class Set(ValueRecord):
    """A named set; with ``map_type`` a map (e.g. ``verdict``).

    ``key`` holds one component per key part: a data type name (``ifname``, ``ether_addr``,
    ``ipv4_addr``, ``ipv6_addr``, ``inet_service``) or a :class:`RawPayload` — a key of raw
    header bits, which a backend must declare by the expression itself.
    """

    family: str
    table: str
    name: str
    key: tuple[str | RawPayload, ...]
    map_type: str | None = None
    flags: tuple[str, ...] = ()


class Elements(ValueRecord):
    """Elements of a set (``values`` None) or a map (one value per key).

    A key is a value or, for a concatenated key, a tuple of values.
    """

    family: str
    table: str
    name: str
    keys: tuple[Value | tuple[Value, ...], ...]
    values: tuple[Value, ...] | None = None


Object = Table | Chain | Rule | Set | Elements

VERBS = ("add", "create", "delete", "flush")


class Command(ValueRecord):
    """One command of a batch: ``add``, ``create``, ``delete`` or ``flush`` an object."""

    verb: str
    obj: Object


class Batch:
    """An ordered list of commands applied as one all-or-nothing transaction."""

    __slots__ = ("commands",)

    def __init__(self, commands: list[Command] | None = None) -> None:
        self.commands: list[Command] = commands if commands is not None else []

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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and self.commands == other.commands

    def __repr__(self) -> str:
        return f"Batch({self.commands!r})"
