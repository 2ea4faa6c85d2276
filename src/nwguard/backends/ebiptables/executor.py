"""Apply port batches with ``ebtables-restore`` / ``iptables-restore`` / ``ip6tables-restore``.

The executor keeps a mirror of the port IR in force (chains, each port's elements and
dispatch), renders every port in libvirt's layout and sends, per table, one ``--noflush``
restore input that moves the kernel from what it has to what is wanted. Each input is one
commit of its table; if a later table refuses its input, the tables already changed get the
input back to their previous state.

A process that has no mirror yet (a diff arriving first) plans the diff on ``base()``, the
whole state the engine last committed, rendered as if in force (as the nftables backend
assumes its tables hold the applied state): a bind touches only its port. Without ``base``
it refuses the diff, and the engine sends its whole state, which is compared with the
kernel's own ``*-save`` listing; the tools list rules in their own spelling (``-p IPv4``,
``--ip-src``), so there every chain is flushed and refilled, still inside one commit.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence

from nwguard.backends.ebiptables.render import PortRules, render_port
from nwguard.backends.ebiptables.tables import (
    TABLE_NAME,
    TABLES,
    Table,
    build,
    parse_save,
    restore_input,
)
from nwguard.errors import ApplyError
from nwguard.ir.nodes import Batch, Value
from nwguard.ir.ports import (
    ChainRules,
    DispatchEntries,
    FilterChain,
    FilterRule,
    IpLayer,
    PortBatch,
    SlotElements,
    SlotSet,
)

# the tools of each Debian variant, by table kind
TOOLS = {
    "nft": {"eb": "ebtables-nft", "ip4": "iptables-nft", "ip6": "ip6tables-nft"},
    "legacy": {"eb": "ebtables-legacy", "ip4": "iptables-legacy", "ip6": "ip6tables-legacy"},
}


class NeedsFullState(ApplyError):
    """A diff reached an executor that does not know the state it applies to."""


class PortModel:
    """The port IR in force, rebuilt from the batches applied."""

    def __init__(self) -> None:
        self.chains: dict[str, tuple[FilterRule, ...]] = {}
        self.elements: dict[str, dict[str, set[tuple[Value, ...]]]] = {}  # port → set → keys
        self.dispatch: dict[str, dict[str, str]] = {}  # port → role → chain

    def copy(self) -> PortModel:
        m = PortModel()
        m.chains = dict(self.chains)
        m.elements = {p: {s: set(k) for s, k in e.items()} for p, e in self.elements.items()}
        m.dispatch = {p: dict(d) for p, d in self.dispatch.items()}
        return m

    def apply(self, batch: PortBatch) -> set[str]:
        """Apply ``batch``; returns the ports whose rendering may have changed."""
        touched: set[str] = set()
        changed_chains: set[str] = set()
        for cmd in batch.commands:
            obj, verb = cmd.obj, cmd.verb
            if isinstance(obj, FilterChain):
                if verb == "add":
                    self.chains.setdefault(obj.name, ())
                elif verb == "flush":
                    self.chains[obj.name] = ()
                else:
                    self.chains.pop(obj.name, None)
                changed_chains.add(obj.name)
            elif isinstance(obj, ChainRules):
                self.chains[obj.chain] = self.chains.get(obj.chain, ()) + obj.rules
                changed_chains.add(obj.chain)
            elif isinstance(obj, SlotElements):
                for key in obj.keys:
                    port = str(key[0])
                    keys = self.elements.setdefault(port, {}).setdefault(obj.set, set())
                    (keys.add if verb == "add" else keys.discard)(tuple(key))
                    touched.add(port)
            elif isinstance(obj, DispatchEntries):
                for port, chain in obj.entries:
                    roles = self.dispatch.setdefault(port, {})
                    if verb == "add":
                        roles[obj.role] = chain
                    elif roles.get(obj.role) == chain:
                        del roles[obj.role]
                    touched.add(port)
            elif not isinstance(obj, (SlotSet, IpLayer)):
                # sets are implicit (ebtables has none); the layout is per port, IP part included
                raise ApplyError(f"unknown port object {type(obj).__name__}")
        for port in [p for p, d in self.dispatch.items() if not d]:
            del self.dispatch[port]
            self.elements.pop(port, None)
        if changed_chains:  # a port using a changed chain (never, with content names) too
            touched |= {p for p, d in self.dispatch.items() if changed_chains & set(d.values())}
        return touched

    def render(self, port: str) -> PortRules:
        elements = {s: sorted(k) for s, k in self.elements.get(port, {}).items()}
        return render_port(port, self.dispatch.get(port, {}), self.chains, elements)


class Runner:
    """Runs the tools: argv and stdin, never a shell."""

    def __init__(self, variant: str = "nft", prefix: Sequence[str] = ()) -> None:
        if variant not in TOOLS:
            raise ApplyError(f"unknown iptables variant {variant!r} (nft or legacy)")
        self.tools = TOOLS[variant]
        self.prefix = list(prefix)  # e.g. ``ip netns exec NS`` (tests)

    def save(self, kind: str) -> str:
        tool = self.tools[kind]
        argv = [f"{tool}-save", "-t", TABLE_NAME[kind]] if kind != "eb" else [f"{tool}-save"]
        out = self._run(argv, None)
        if kind == "eb":  # ebtables-save lists every table; keep nat
            part, keep = [], False
            for line in out.splitlines():
                if line.startswith("*"):
                    keep = line == "*nat"
                if keep:
                    part.append(line)
            out = "\n".join(part)
        return out

    def save_table(self, kind: str, table: str) -> str:
        """``iptables-save -t TABLE`` (or ip6tables) output."""
        return self._run([f"{self.tools[kind]}-save", "-t", table], None)

    def restore_argv(self, kind: str) -> list[str]:
        return [f"{self.tools[kind]}-restore", "--noflush"]

    def restore(self, kind: str, text: str) -> None:
        self._run(self.restore_argv(kind), text)

    def _run(self, argv: list[str], stdin: str | None) -> str:
        argv = [*self.prefix, *argv]
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise ApplyError(
                f"{argv[0]} is not installed (apt-get install iptables ebtables)"
            ) from None
        if p.returncode != 0:
            msg = " / ".join(ln.strip() for ln in p.stderr.splitlines() if ln.strip())
            raise ApplyError(f"{argv[0]} failed: {msg or f'exit status {p.returncode}'}")
        return p.stdout


class EbiptablesExecutor:
    """The :class:`nwguard.backends.Executor` of the iptables/ebtables backend."""

    name = "iptables"
    # iptables sees bridged traffic only through br_netfilter: every port with IP-layer rules
    # needs its bridge's IP hooks (nftables' bridge family reads IP headers itself)
    ip_rules_need_ip_hooks = True

    def __init__(self, variant: str = "nft", runner: Runner | None = None) -> None:
        self.runner = runner or Runner(variant)
        self.base: Callable[[], PortBatch] | None = None  # the state in force, as a full batch
        self.model: PortModel | None = None
        self.rendered: dict[str, PortRules] = {}
        self.tables: dict[str, Table] = {}

    def plan(self, batch: PortBatch) -> tuple[PortModel, dict[str, PortRules], dict[str, Table]]:
        """The model, port renderings and tables after ``batch`` (nothing is applied)."""
        if batch.reset:
            model, rendered = PortModel(), {}
        elif self.model is None and self.base is not None:
            self.model, self.rendered, self.tables = self.plan(self.base())
            model, rendered = self.model.copy(), dict(self.rendered)
        elif self.model is None:
            raise NeedsFullState("the iptables backend needs the whole state first")
        else:
            model, rendered = self.model.copy(), dict(self.rendered)
        touched = model.apply(batch)
        for port in touched | (set(model.dispatch) if batch.reset else set()):
            if port in model.dispatch:
                rendered[port] = model.render(port)
            else:
                rendered.pop(port, None)
        ports = [rendered[p] for p in sorted(rendered)]
        return model, rendered, {k: build(k, ports) for k in TABLES}

    def restore_inputs(self, batch: PortBatch) -> dict[str, str]:
        """Table kind → the restore input ``batch`` sends (what ``--dry-run`` shows)."""
        _, _, tables = self.plan(batch)
        old = self._current(batch.reset)
        return {k: restore_input(old[k], tables[k]) for k in TABLES}

    def restore_commands(self, batch: Batch | PortBatch) -> list[tuple[list[str], str]]:
        """``(argv, stdin)`` of each tool run ``batch`` makes, in order; nothing is applied."""
        if isinstance(batch, Batch):
            if batch:
                raise ApplyError("virtual networks are not implemented on the iptables backend")
            return []
        inputs = self.restore_inputs(batch)
        return [(self.runner.restore_argv(k), inputs[k]) for k in TABLES if inputs[k]]

    def drift(self, state: Callable[[], PortBatch]) -> list[str]:
        """What the kernel lacks of the whole state ``state()``, compared by structure
        (chains, rules per chain, links per hook chain): the tools list rules in their own
        spelling. Empty when in line. Reads the ``*-save`` listings; changes nothing. What
        this executor applied last is the state (``state`` is called only without it)."""
        if self.model is not None and self.tables:
            want = self.tables
        else:
            _, _, want = EbiptablesExecutor(runner=self.runner).plan(state())
        problems = []
        for k in TABLES:
            have = parse_save(k, self.runner.save(k))
            for name, rules in want[k].chains.items():
                if name not in have.chains:
                    problems.append(f"{k}: chain {name} missing")
                elif len(have.chains[name]) != len(rules):
                    problems.append(
                        f"{k}: chain {name} has {len(have.chains[name])} of {len(rules)} rules"
                    )
            problems += [
                f"{k}: chain {name} is not nwguard's state"
                for name in have.chains.keys() - want[k].chains.keys()
            ]
            for hook, rules in want[k].links.items():
                if len(have.links.get(hook, ())) != len(rules):
                    problems.append(
                        f"{k}: {hook} has {len(have.links.get(hook, ()))} of {len(rules)} jumps"
                    )
        return problems

    def _current(self, reset: bool) -> dict[str, Table]:
        if reset or not self.tables:
            return {k: parse_save(k, self.runner.save(k)) for k in TABLES}
        return self.tables

    def apply(self, batch: Batch | PortBatch) -> None:
        if isinstance(batch, Batch):
            if batch:
                raise ApplyError("virtual networks are not implemented on the iptables backend")
            return
        model, rendered, tables = self.plan(batch)
        old = self._current(batch.reset)
        done: list[str] = []
        try:
            for k in TABLES:
                text = restore_input(old[k], tables[k])
                if text:
                    self.runner.restore(k, text)
                done.append(k)
        except ApplyError:
            for k in reversed(done):
                back = restore_input(tables[k], old[k])
                if back:
                    try:
                        self.runner.restore(k, back)
                    except ApplyError:
                        pass  # the next change starts from the kernel's listing
            self.model, self.tables = None, {}
            raise
        self.model, self.rendered, self.tables = model, rendered, tables


def render_ports(
    dispatch: Mapping[str, Mapping[str, str]],
    chains: Mapping[str, Sequence[FilterRule]],
    elements: Mapping[str, Mapping[str, Sequence[tuple[Value, ...]]]],
) -> dict[str, PortRules]:
    """Every port's rendering (for tests and tools)."""
    return {p: render_port(p, d, chains, elements.get(p, {})) for p, d in sorted(dispatch.items())}
