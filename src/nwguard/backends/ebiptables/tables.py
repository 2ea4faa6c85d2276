"""Whole tables in libvirt's layout, and the ``*-restore --noflush`` input between two (pure).

A :class:`Table` holds what nwguard owns in one kernel table: its chains, whole (a port's
``libvirt-I-vnet0``, ``FI-vnet0``, the shared ``libvirt-in``), and its rules in chains it
shares with others (``PREROUTING -i vnet0 -j libvirt-I-vnet0``, ``FORWARD -j libvirt-in``).
:func:`restore_input` turns one table into another in one input: a changed chain is flushed
and refilled in the same commit, so no packet ever sees it half-built or empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from nwguard.backends.ebiptables.render import HOOK_CHAINS, PortRules

TABLES = ("eb", "ip4", "ip6")
TABLE_NAME = {"eb": "nat", "ip4": "filter", "ip6": "filter"}


@dataclass
class Table:
    """nwguard's part of one table. ``links``: chain → our rules in it, in order."""

    kind: str
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    links: dict[str, tuple[str, ...]] = field(default_factory=dict)


def build(kind: str, ports: Iterable[PortRules]) -> Table:
    """The table that ``ports`` (in this order) need."""
    t = Table(kind)
    links: dict[str, list[str]] = {}
    for pr in ports:
        own = getattr(pr, kind)
        if not own:
            continue
        t.chains.update(own)
        pairs = pr.eb_links() if kind == "eb" else pr.ip_links()
        for chain, rule in pairs:
            links.setdefault(chain, []).append(rule)
    if kind != "eb" and t.chains:
        for hook, chain in HOOK_CHAINS:
            links.setdefault(hook, []).append(f"-j {chain}")
            t.chains[chain] = tuple(links.pop(chain, ()))
    t.links = {c: tuple(r) for c, r in links.items()}
    return t


def _declare(kind: str, chain: str) -> str:
    # RETURN, as ``ebtables -N`` makes them: falling off a sub-chain goes on in its root
    # chain. (ebtables-nft turns ``:chain ACCEPT`` into a final accept rule, yet lists the
    # chain's policy as RETURN.)
    return f":{chain} RETURN" if kind == "eb" else f":{chain} - [0:0]"


def restore_input(old: Table, new: Table) -> str:
    """The ``--noflush`` restore input that turns ``old`` into ``new`` ("" if they are equal)."""
    kind = new.kind
    lines: list[str] = []
    created = [c for c in new.chains if c not in old.chains]
    changed = [c for c in new.chains if c in old.chains and old.chains[c] != new.chains[c]]
    removed = [c for c in old.chains if c not in new.chains]
    lines += [_declare(kind, c) for c in created]
    lines += [f"-F {c}" for c in changed]
    for c in (*created, *changed):
        lines += [f"-A {c} {r}" for r in new.chains[c]]
    for chain in sorted(old.links.keys() | new.links.keys()):
        before, after = old.links.get(chain, ()), new.links.get(chain, ())
        if before == after:
            continue
        keep, had = set(after), set(before)  # (sets: a hook chain holds a link per port)
        lines += [f"-D {chain} {r}" for r in before if r not in keep]
        fresh = [r for r in after if r not in had]
        if kind != "eb" and chain in ("FORWARD", "INPUT"):
            # the hooks go first, in libvirt's order (FORWARD 1-3, INPUT 1)
            lines += [f"-I {chain} {i} {r}" for i, r in enumerate(fresh, 1)]
        else:
            lines += [f"-A {chain} {r}" for r in fresh]
    lines += [f"-F {c}" for c in removed]
    lines += [f"-X {c}" for c in removed]
    if not lines:
        return ""
    return "\n".join([f"*{TABLE_NAME[kind]}", *lines, "COMMIT", ""])


_OWNED_PREFIXES = ("libvirt-I-", "libvirt-O-", "I-", "O-", "FI-", "FO-", "HI-")
_SHARED = {c for _, c in HOOK_CHAINS}


def owned(chain: str) -> bool:
    """A chain of libvirt's nwfilter layout (nwguard replaces them; others are left alone)."""
    return chain in _SHARED or chain.startswith(_OWNED_PREFIXES)


def parse_save(kind: str, text: str) -> Table:
    """nwguard's part of a table from ``*-save`` output: owned chains, and the rules of other
    chains that jump or go to an owned chain."""
    t = Table(kind)
    chains: dict[str, list[str]] = {}
    links: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(":"):
            name = line[1:].split()[0]
            if owned(name):
                chains.setdefault(name, [])
        elif line.startswith("-A "):
            _, chain, rule = line.split(" ", 2)
            if chain in chains:
                chains[chain].append(rule)
            elif any(owned(w) for w in _targets(rule)):
                links.setdefault(chain, []).append(rule)
    t.chains = {c: tuple(r) for c, r in chains.items()}
    t.links = {c: tuple(r) for c, r in links.items()}
    return t


def _targets(rule: str) -> list[str]:
    words = rule.split()
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g", "--jump", "--goto")]
