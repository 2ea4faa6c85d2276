"""``nwguard nwfilter-binding-stats PORT`` and ``nwguard top``: the per-port counters."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from nwguard.cli.group import emit_json, main_group
from nwguard.cli.main import Obj

if TYPE_CHECKING:
    from rich.console import RenderableType

    from nwguard.engine.stats import PortStats, RuleDrops, SideStats


def _side_json(s: SideStats) -> dict[str, Any]:
    return {
        "accepted": {"packets": s.accepted.packets, "bytes": s.accepted.bytes},
        "dropped": {"packets": s.dropped.packets, "bytes": s.dropped.bytes},
    }


def rule_json(r: RuleDrops) -> dict[str, Any]:
    return {
        "side": r.side, "filter": r.filter, "path": list(r.path), "rule": r.index,
        "line": r.line, "action": r.action, "chain": r.chain, "position": r.position,
        "packets": r.packets, "bytes": r.bytes,
    }  # fmt: skip


def stats_json(s: PortStats) -> dict[str, Any]:
    return {
        "port": s.port, "time": s.time, "sent": _side_json(s.sent),
        "received": _side_json(s.received), "rules": [rule_json(r) for r in s.rules],
    }  # fmt: skip


def rule_name(r: RuleDrops) -> str:
    """``clean-traffic > no-mac-spoofing rule[2] (line 7)``, as explain names a rule."""
    if not r.filter:
        return f"(a rule no longer in force: {r.chain}[{r.position}])"
    line = f" (line {r.line})" if r.line else ""
    return f"{' > '.join(r.path or (r.filter,))} rule[{r.index}]{line}"


@main_group.command("nwfilter-binding-stats")
@click.argument("portdev")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def binding_stats(obj: Obj, portdev: str, as_json: bool) -> None:
    """Packets and bytes PORTDEV sent and received, accepted and dropped, and its drops by rule."""
    s = obj.client.nwfilter_binding_stats(portdev)
    if as_json:
        emit_json(stats_json(s))
        return
    click.echo(f"Port {s.port}")
    click.echo(f"{'':20} {'packets':>12} {'bytes':>14}")
    for label, side in (("sent", s.sent), ("received", s.received)):
        click.echo(
            f"{label + ' accepted':20} {side.accepted.packets:>12} {side.accepted.bytes:>14}"
        )
        click.echo(f"{label + ' dropped':20} {side.dropped.packets:>12} {side.dropped.bytes:>14}")
    if s.rules:
        click.echo("Drops by rule:")
        for r in s.rules:
            click.echo(f"  {r.side:3} {r.action:6} {r.packets:>10} {r.bytes:>12}  {rule_name(r)}")


# ----------------------------------------------------------------------------- top


class Rates:
    """Per-second rates between two readings of every port."""

    def __init__(self) -> None:
        self.last: dict[str, PortStats] = {}

    def update(self, now: list[PortStats]) -> dict[str, tuple[float, float, float, float]]:
        """port -> (sent accepted, sent dropped, received accepted, received dropped) pps."""
        out = {}
        for s in now:
            before = self.last.get(s.port)
            dt = s.time - before.time if before is not None else 0.0
            if before is None or dt <= 0:
                out[s.port] = (0.0, 0.0, 0.0, 0.0)
                continue
            pairs = ((s.sent.accepted, before.sent.accepted), (s.sent.dropped, before.sent.dropped),
                     (s.received.accepted, before.received.accepted),
                     (s.received.dropped, before.received.dropped))  # fmt: skip
            a, b, c, d = (max(n.packets - o.packets, 0) / dt for n, o in pairs)
            out[s.port] = (a, b, c, d)
        self.last = {s.port: s for s in now}
        return out


def screen(stats: list[PortStats], rates: dict[str, tuple[float, float, float, float]]) -> Any:
    from rich.console import Group
    from rich.table import Table

    ports = Table(title="nwguard top: ports (packets per second; totals)", expand=True)
    for col in ("port", "sent ok/s", "sent drop/s", "recv ok/s", "recv drop/s", "dropped"):
        ports.add_column(col, justify="left" if col == "port" else "right")
    for s in stats:
        pps = rates.get(s.port, (0.0, 0.0, 0.0, 0.0))
        total = s.sent.dropped.packets + s.received.dropped.packets
        ports.add_row(s.port, *(f"{x:.1f}" for x in pps), str(total))
    rules = Table(title="rules that drop most", expand=True)
    for col in ("port", "side", "packets", "rule"):
        rules.add_column(col, justify="right" if col == "packets" else "left")
    ranked = sorted(((r, s.port) for s in stats for r in s.rules), key=lambda x: -x[0].packets)
    for r, port in ranked[:10]:
        rules.add_row(port, r.side, str(r.packets), rule_name(r))
    parts: list[RenderableType] = [ports, rules, "q or Ctrl-C: quit"]
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """stdin in cbreak mode (keys without Enter), restored on exit; a no-op off a terminal."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(fd: int | None, seconds: float) -> bool:
    """Wait up to ``seconds``; True when ``q`` was pressed."""
    if fd is None:
        time.sleep(seconds)
        return False
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready and os.read(fd, 32).lower().count(b"q"):
            return True
    return False


@main_group.command("top")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds per refresh.")
@click.pass_obj
def top(obj: Obj, interval: float) -> None:
    """Live view of the bound ports: accepted and dropped rates, and the rules that drop most."""
    from rich.live import Live

    rates = Rates()
    client = obj.client
    try:
        with _keys() as fd, Live(auto_refresh=False, screen=True) as live:
            while True:
                now = client.nwfilter_binding_stats_all()
                live.update(screen(now, rates.update(now)), refresh=True)
                if _wait_for_quit(fd, interval):
                    return
    except KeyboardInterrupt:
        return
