"""``nwguard drops [PORT] [--follow]``: what nwguard's rules dropped, by rule, or as it happens."""

from __future__ import annotations

import datetime
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from nwguard.cli.group import main_group
from nwguard.cli.main import Obj

if TYPE_CHECKING:
    from nwguard.engine.stats import RuleDrops


def _origin(obj: Obj, cache: dict[tuple[str, int], RuleDrops], port: str, chain: str,
            pos: int) -> RuleDrops | None:  # fmt: skip
    """The rule at ``chain[pos]`` with its origin, from the port's stats (which count the drop
    before the log reaches us); None when the port or the rule is not known."""
    if (chain, pos) not in cache:
        try:
            stats = obj.client.nwfilter_binding_stats(port)
        except Exception:  # noqa: BLE001 - unbound meanwhile, or no daemon answer: unnamed
            return None
        for r in stats.rules:
            cache[(r.chain, r.position)] = r
    return cache.get((chain, pos))


@main_group.command("drops")
@click.argument("port", required=False)
@click.option("--follow", "-f", is_flag=True, help="Print each dropped packet as it is dropped.")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON: one object (with --follow, a line) each."
)
@click.pass_obj
def drops(obj: Obj, port: str | None, follow: bool, as_json: bool) -> None:
    """Dropped packets of PORT (default: every bound port): counts by rule, or with --follow
    each packet (time, port, direction, summary, filter and rule) through nflog, logged by
    the kernel only while this command listens."""
    from nwguard.cli.stats import rule_name

    if not follow:
        stats = [obj.client.nwfilter_binding_stats(port)] if port else (
            obj.client.nwfilter_binding_stats_all()
        )  # fmt: skip
        rows = [(s.port, r) for s in stats for r in s.rules]
        if as_json:
            from nwguard.cli.stats import rule_json

            click.echo(json.dumps([{"port": p, **rule_json(r)} for p, r in rows], indent=2))
            return
        for p, r in sorted(rows, key=lambda x: -x[1].packets):
            click.echo(f"{p:16} {r.side:3} {r.action:6} {r.packets:>10}  {rule_name(r)}")
        return
    _follow(obj, port, as_json)


def _follow(obj: Obj, port: str | None, as_json: bool) -> None:
    from nwguard.backends.nft import layout
    from nwguard.backends.nft.nflog import NflogSocket
    from nwguard.backends.nft.render import parse_log_prefix
    from nwguard.cli.stats import rule_name
    from nwguard.explain.packet import decode

    cache: dict[tuple[str, int], RuleDrops] = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with NflogSocket(layout.NFLOG_GROUP) as sock:
        click.echo(f"listening to nflog group {layout.NFLOG_GROUP}", err=True)
        try:
            while True:
                for p in sock.read():
                    where = parse_log_prefix(p.prefix)
                    if where is None:
                        continue  # another program's rule logging to this group
                    side, dev = ("out", p.indev) if not p.outdev else ("in", p.outdev)
                    if port is not None and dev != port:
                        continue
                    rule = _origin(obj, cache, dev, *where)
                    summary = decode(p.frame).summary() if len(p.frame) >= 14 else ""
                    stamp = datetime.datetime.fromtimestamp(p.time).isoformat(
                        timespec="milliseconds"
                    )
                    if as_json:
                        out: dict[str, Any] = {
                            "time": stamp, "port": dev, "direction": side, "summary": summary,
                            "chain": where[0], "position": where[1],
                            "filter": rule.filter if rule else None,
                            "path": list(rule.path) if rule else None,
                            "rule": rule.index if rule else None,
                            "line": rule.line if rule else None,
                            "action": rule.action if rule else None,
                        }  # fmt: skip
                        click.echo(json.dumps(out))
                    else:
                        name = rule_name(rule) if rule else f"{where[0]}[{where[1]}]"
                        action = rule.action if rule else "drop"
                        click.echo(f"{stamp} {dev} {side} {action} {summary}  {name}")
                    sys.stdout.flush()
        except KeyboardInterrupt:
            return
