"""Per-port counters in the terms of the filters: the stats service (``nwfilter-binding-stats``,
``top``).

Two sources: each port's interface statistics (what it took from its guest, what it gave
to it; no rule counts a frame that passes) and the backend's drop counters, per drop or
reject rule and interface name, keyed by the rule's chain and position. Here those become,
per bound port and side (``sent`` by the guest, ``received`` by it), packets and bytes
(frame bytes, as ``ip -s link`` counts them) accepted and dropped (rejects included), and
the rules that stopped them with their origin. Sent and accepted = what the interface
received less what the rules dropped; received and accepted = what the interface sent.
Interface statistics last as long as the interface, drop counters as long as nwguard's
tables: neither is reset when a port is bound or unbound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from nwguard.errors import NotFoundError
from nwguard.records import ValueRecord

if TYPE_CHECKING:
    from nwguard.backends.nft.counters import RawCounters
    from nwguard.compile.kernel_state import KernelState
    from nwguard.engine.context import Context


class Traffic(ValueRecord):
    packets: int = 0
    bytes: int = 0

    def plus(self, packets: int, nbytes: int) -> Traffic:
        return Traffic(self.packets + packets, self.bytes + nbytes)


class SideStats(ValueRecord):
    """One direction of a port: what nwguard's rules let through and what they stopped."""

    accepted: Traffic
    dropped: Traffic


class RuleDrops(ValueRecord):
    """One rule's drops on one port and side, with where the rule comes from."""

    side: str  # "out": sent by the guest, "in": sent to it
    filter: str  # "" when the rule is no longer in force (its filter was redefined since)
    path: tuple[str, ...]
    index: int  # rule[N] of ``filter`` (0: unknown)
    line: int | None
    action: str  # drop or reject
    chain: str
    position: int  # the rule's place in ``chain``
    packets: int
    bytes: int


class PortStats(ValueRecord):
    port: str
    sent: SideStats  # from the guest (libvirt's direction out)
    received: SideStats  # to the guest (direction in)
    rules: tuple[RuleDrops, ...]  # most packets first
    time: float  # when the kernel was read (seconds since the epoch)


def compute(
    state: KernelState, raw: RawCounters, ports: Iterable[str], at: float
) -> list[PortStats]:
    """Pure: the stats of ``ports`` from the applied state and the kernel's counters."""
    wanted = set(ports)
    per_rule: dict[tuple[str, str, str, int], list[int]] = {}
    for (iif, oif, chain, pos), (pk, nb) in raw.drops.items():
        port, side = (iif, "out") if oif == "" else (oif, "in")
        if port not in wanted:
            continue
        acc = per_rule.setdefault((port, side, chain, pos), [0, 0])
        acc[0] += pk
        acc[1] += nb
    rules: dict[str, list[RuleDrops]] = {p: [] for p in wanted}
    stopped: dict[tuple[str, str], Traffic] = {}
    for (port, side, chain, pos), (pk, nb) in per_rule.items():
        stopped[(port, side)] = stopped.get((port, side), Traffic()).plus(pk, nb)
        rules[port].append(_rule_drops(state, side, chain, pos, pk, nb))
    out = []
    for port in sorted(wanted):
        sides = []
        pk, nb = raw.from_guest.get(port, (0, 0))
        d = stopped.get((port, "out"), Traffic())
        sides.append(SideStats(Traffic(max(pk - d.packets, 0), max(nb - d.bytes, 0)), d))
        pk, nb = raw.to_guest.get(port, (0, 0))
        sides.append(SideStats(Traffic(pk, nb), stopped.get((port, "in"), Traffic())))
        ranked = sorted(rules[port], key=lambda r: (-r.packets, r.side, r.chain, r.position))
        out.append(PortStats(port, sides[0], sides[1], tuple(ranked), at))
    return out


def _rule_drops(
    state: KernelState, side: str, chain: str, pos: int, packets: int, nbytes: int
) -> RuleDrops:
    rules = state.chains.get(chain, ())
    rule = rules[pos] if pos < len(rules) else None
    if rule is None:
        return RuleDrops(side, "", (), 0, None, "drop", chain, pos, packets, nbytes)
    o = rule.origin
    return RuleDrops(
        side,
        o.filter if o else "",
        o.path if o else (),
        o.index if o else 0,
        o.line if o else None,
        rule.verdict.kind,
        chain,
        pos,
        packets,
        nbytes,
    )


class StatsService:
    """Reads the kernel's counters (``read``: the nftables backend's drop counters and the
    ports' interface statistics by default)."""

    def __init__(self, ctx: Context, read: Callable[[set[str]], RawCounters] | None = None) -> None:
        self.ctx = ctx
        self._read = read

    def _raw(self, ports: set[str]) -> RawCounters:
        if self._read is not None:
            return self._read(ports)
        from nwguard.backends.nft.counters import RawCounters, read
        from nwguard.host.netlink import ipr, link_counters

        drops = read()
        with ipr() as handle:
            links = link_counters(handle, ports)
        return RawCounters(
            {p: (c[0], c[1]) for p, c in links.items()},
            {p: (c[2], c[3]) for p, c in links.items()},
            drops,
        )

    def nwfilter_binding_stats(self, portdev: str) -> PortStats:
        state = self.ctx.engine().applied()
        if portdev not in state.ports:
            raise NotFoundError(f"no filter binding in force for port '{portdev}'")
        return compute(state, self._raw({portdev}), [portdev], time.time())[0]

    def nwfilter_binding_stats_all(self) -> list[PortStats]:
        state = self.ctx.engine().applied()
        if not state.ports:
            return []  # nothing bound: the table may not even exist
        return compute(state, self._raw(set(state.ports)), state.ports, time.time())
