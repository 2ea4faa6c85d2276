"""A virtual network's firewall in libvirt's iptables layout (network-firewall.md §3).

The network's IR batch (:func:`nwguard.compile.network.network_batch`, one nftables table
of chains ``input``, ``output``, ``guest_cross`` / ``guest_input`` / ``guest_output``,
``guest_nat``) is spelled as iptables / ip6tables rules in libvirt's private chains::

    filter  LIBVIRT_INP  (INPUT)   LIBVIRT_OUT (OUTPUT)
            LIBVIRT_FWX, LIBVIRT_FWI, LIBVIRT_FWO  (FORWARD, evaluated in that order)
    nat     LIBVIRT_PRT  (POSTROUTING)

A start inserts the network's rules at the top of those chains, as libvirt does (so the
newest network's rules come first, and within one network the IR's order holds); a stop
deletes exactly those rules. The chains and their jumps are created when missing and left in
place (libvirt leaves them too). Each change is one ``--noflush`` restore input per table;
if a later one is refused, the tables already changed get the reverse input.
"""

from __future__ import annotations

from collections.abc import Iterator

from nwguard.backends.ebiptables.executor import Runner
from nwguard.backends.ebiptables.render import HOOK_CHAINS
from nwguard.errors import ApplyError, CompileError
from nwguard.ir.nodes import (
    AnonSet,
    Batch,
    Counter,
    Ct,
    Masquerade,
    Match,
    Meta,
    Payload,
    Prefix,
    Range,
    Reject,
    Rule,
    Snat,
    Verdict,
)

CHAINS = {
    "input": ("filter", "LIBVIRT_INP"),
    "output": ("filter", "LIBVIRT_OUT"),
    "guest_cross": ("filter", "LIBVIRT_FWX"),
    "guest_input": ("filter", "LIBVIRT_FWI"),
    "guest_output": ("filter", "LIBVIRT_FWO"),
    "guest_nat": ("nat", "LIBVIRT_PRT"),
}
# each table's private chains and the built-in chain that jumps to it, in insertion order
# (every jump goes to position 1, so FORWARD evaluates FWX, FWI, FWO)
HOOKS = {
    "filter": (
        ("INPUT", "LIBVIRT_INP"),
        ("OUTPUT", "LIBVIRT_OUT"),
        ("FORWARD", "LIBVIRT_FWO"),
        ("FORWARD", "LIBVIRT_FWI"),
        ("FORWARD", "LIBVIRT_FWX"),
    ),
    "nat": (("POSTROUTING", "LIBVIRT_PRT"),),
}
# libvirt's host chains end up in the reverse of its insertion order, which the IR keeps
_REVERSED = {"LIBVIRT_INP", "LIBVIRT_OUT"}
_FAMILY = {"ipv4": "ip4", "ipv6": "ip6", "ip": "ip4", "ip6": "ip6"}
Key = tuple[str, str]  # (tool kind "ip4" | "ip6", table)


def removes(batch: Batch) -> bool:
    """Whether ``batch`` deletes a network's rules (a stop) rather than adding them."""
    verbs = {c.verb for c in batch.commands if isinstance(c.obj, Rule)}
    if verbs == {"add", "delete"}:
        raise CompileError("iptables: a network batch either adds or deletes rules")
    return verbs == {"delete"}


def network_rules(batch: Batch) -> dict[Key, list[tuple[str, str]]]:
    """(kind, table) → the network's ``(chain, rule)`` in evaluation order (pure)."""
    out: dict[Key, list[tuple[str, str]]] = {}
    for cmd in batch.commands:
        rule = cmd.obj
        if not isinstance(rule, Rule) or rule.chain not in CHAINS:
            continue  # tables, chains, the forward chain's jumps: the layout is fixed here
        table, chain = CHAINS[rule.chain]
        kind, spec = _spell(rule)
        out.setdefault((kind, table), []).append((chain, spec))
    return out


def _spell(rule: Rule) -> tuple[str, str]:
    kind = None
    src = dst = iif = oif = proto = ""
    tail: list[str] = []
    target = ""
    for s in rule.stmts:
        if isinstance(s, Counter):
            continue
        if isinstance(s, Match) and isinstance(s.left, Meta):
            key, v = s.left.key, str(s.right)
            if key == "nfproto":
                kind = _FAMILY[v]
            elif key == "iifname":
                iif = f"-i {v}"
            elif key == "oifname":
                oif = f"-o {v}"
            elif key == "l4proto":
                proto = v
            else:
                raise CompileError(f"iptables: no match for meta {key}")
        elif isinstance(s, Match) and isinstance(s.left, Payload):
            p, f = s.left.protocol, s.left.field
            if p in ("ip", "ip6") and f in ("saddr", "daddr"):
                kind = _FAMILY[p]
                a = s.right
                host = "128" if ":" in str(a) else "32"
                addr = f"{a.addr}/{a.length}" if isinstance(a, Prefix) else f"{a}/{host}"
                text = f"{'-s' if f == 'saddr' else '-d'} {addr}"
                text = f"! {text}" if s.op == "!=" else text
                src, dst = (text, dst) if f == "saddr" else (src, text)
            elif p in ("tcp", "udp") and f == "dport":
                proto = p
                tail.append(f"-m {p} --dport {s.right}")
            else:
                raise CompileError(f"iptables: no match for {p} {f}")
        elif isinstance(s, Match) and isinstance(s.left, Ct) and isinstance(s.right, AnonSet):
            states = ",".join(str(x).upper() for x in s.right.items)
            tail.append(f"-m conntrack --ctstate {states}")
        elif isinstance(s, Verdict) and s.kind in ("accept", "return"):
            target = f"-j {s.kind.upper()}"
        elif isinstance(s, Reject):
            target = "-j REJECT"
        elif isinstance(s, Masquerade):
            ports = f" --to-ports {s.port_low}-{s.port_high}" if s.port_low else ""
            target = f"-j MASQUERADE{ports}"
        elif isinstance(s, Snat):
            a = s.addr
            to = f"{a.low}-{a.high}" if isinstance(a, Range) else str(a)
            if isinstance(s.port, Range):
                to += f":{s.port.low}-{s.port.high}"
            target = f"-j SNAT --to-source {to}"
        else:
            raise CompileError(f"iptables: cannot spell {type(s).__name__} in a network rule")
    if kind is None:
        raise CompileError(f"iptables: a network rule without a family in {rule.chain}")
    words = [src, dst, iif, oif, f"-p {proto}" if proto else "", *tail, target]
    return kind, " ".join(w for w in words if w)


class NetworkFirewall:
    """Adds and removes networks' rules in libvirt's private chains."""

    def __init__(self, variant: str = "nft", runner: Runner | None = None) -> None:
        self.runner = runner or Runner(variant)

    def restore_inputs(self, batch: Batch) -> list[tuple[Key, str]]:
        """The restore input per table that adds (or deletes) ``batch``'s rules."""
        remove = removes(batch)
        out = []
        for (kind, table), rules in sorted(network_rules(batch).items()):
            lines = [f"*{table}"]
            if remove:
                lines += [f"-D {chain} {spec}" for chain, spec in rules]
            else:
                lines += self._missing_layout(kind, table)
                lines += [f"-I {chain} 1 {spec}" for chain, spec in _insertion_order(rules)]
            out.append(((kind, table), "\n".join([*lines, "COMMIT", ""])))
        return out

    def _missing_layout(self, kind: str, table: str) -> list[str]:
        saved = self.runner.save_table(kind, table).splitlines()
        chains = {ln[1:].split()[0] for ln in saved if ln.startswith(":")}
        lines = [f":{c} - [0:0]" for _, c in HOOKS[table] if c not in chains]
        for hook, c in HOOKS[table]:
            if f"-A {hook} -j {c}" not in saved:
                lines.append(f"-I {hook} {_after_nwfilter(saved, hook)} -j {c}")
        return lines

    def restore_commands(self, batch: Batch) -> list[tuple[list[str], str]]:
        """``(argv, stdin)`` of each tool run; nothing is applied (``--dry-run``)."""
        return [(self.runner.restore_argv(k), t) for (k, _), t in self.restore_inputs(batch)]

    def apply(self, batch: Batch) -> None:
        """Add (or delete) the network's rules; all tables or, on a refusal, none."""
        done: list[Key] = []
        try:
            for key, text in self.restore_inputs(batch):
                self.runner.restore(key[0], text)
                done.append(key)
        except ApplyError:
            back = dict(self._reverse(batch, removes(batch)))
            for key in reversed(done):
                try:
                    self.runner.restore(key[0], back[key])
                except ApplyError:
                    pass  # the error below is what the caller reports
            raise

    def drift(self, batch: Batch) -> dict[Key, list[str]]:
        """What of a started network's rules (``batch``, as started) the tables lack:
        (kind, table) → problems. The tools list rules in their own spelling (``-j REJECT
        --reject-with ...``), so a rule counts as present when an unclaimed rule of its
        chain holds its words in order."""
        out: dict[Key, list[str]] = {}
        for (kind, table), rules in sorted(network_rules(batch).items()):
            saved = self.runner.save_table(kind, table).splitlines()
            problems = [f"{h} -j {c} missing" for h, c in HOOKS[table]
                        if f"-A {h} -j {c}" not in saved]  # fmt: skip
            present = _present(saved, rules)
            problems += [f"{c}: {r} missing" for (c, r), ok in zip(rules, present) if not ok]
            if problems:
                out[(kind, table)] = problems
        return out

    def repair(self, batch: Batch, tables: set[Key]) -> None:
        """Put the network's rules of ``tables`` back, one commit per table: the rules still
        there are deleted and all of them inserted anew, in libvirt's order (others' rules
        are not touched)."""
        for (kind, table), rules in sorted(network_rules(batch).items()):
            if (kind, table) not in tables:
                continue
            present = _present(self.runner.save_table(kind, table).splitlines(), rules)
            lines = [f"*{table}", *(f"-D {c} {r}" for (c, r), ok in zip(rules, present) if ok)]
            lines += self._missing_layout(kind, table)
            lines += [f"-I {c} 1 {r}" for c, r in _insertion_order(rules)]
            self.runner.restore(kind, "\n".join([*lines, "COMMIT", ""]))

    def _reverse(self, batch: Batch, remove: bool) -> Iterator[tuple[Key, str]]:
        for (kind, table), rules in network_rules(batch).items():
            if remove:  # put the removed rules back, in their order
                lines = [f"-I {c} 1 {s}" for c, s in _insertion_order(rules)]
            else:
                lines = [f"-D {c} {s}" for c, s in rules]
            yield (kind, table), "\n".join([f"*{table}", *lines, "COMMIT", ""])


def _present(saved: list[str], rules: list[tuple[str, str]]) -> list[bool]:
    """For each ``(chain, rule)``: whether a listed rule of the chain, not claimed by an
    earlier one, holds the rule's words in their order."""
    listed: dict[str, list[list[str]]] = {}
    for ln in saved:
        if ln.startswith("-A "):
            chain, _, rest = ln[3:].partition(" ")
            listed.setdefault(chain, []).append(rest.split())
    out = []
    for chain, rule in rules:
        words, candidates = rule.split(), listed.get(chain, [])
        hit = next((i for i, c in enumerate(candidates) if _in_order(words, c)), None)
        if hit is not None:
            candidates.pop(hit)
        out.append(hit is not None)
    return out


def _in_order(words: list[str], listed: list[str]) -> bool:
    it = iter(listed)
    return all(w in it for w in words)


_NWFILTER_HOOKS = {f"-j {c}" for _, c in HOOK_CHAINS}


def _after_nwfilter(saved: list[str], hook: str) -> int:
    """Where a network's jump goes in ``hook``: after the port filters' jumps (which sit at
    its top), so a network's ACCEPT never skips a guest's own filter."""
    rules = [ln.split(" ", 2)[2] for ln in saved if ln.startswith(f"-A {hook} ")]
    n = 0
    while n < len(rules) and rules[n] in _NWFILTER_HOOKS:
        n += 1
    return n + 1


def _insertion_order(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each rule goes to position 1: reversed, so the IR's order holds at the top, except in
    the host chains, whose order libvirt's insertions reverse (all of them accept)."""
    rev = [r for r in reversed(rules) if r[0] not in _REVERSED]
    return [r for r in rules if r[0] in _REVERSED] + rev
