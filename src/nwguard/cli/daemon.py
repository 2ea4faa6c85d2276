"""``nwguard daemon-status``: whether commands go through ``nwguardd`` and what it is doing."""

from __future__ import annotations

import time

import click

from nwguard.cli.main import Obj, emit_json, main_group


@main_group.command("daemon-status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def daemon_status(obj: Obj, as_json: bool) -> None:
    """Show whether nwguardd serves this state directory (exit 1 when it does not)."""
    from nwguard.daemon.proxy import DaemonProxy

    client = obj.client
    if not isinstance(client, DaemonProxy):
        if as_json:
            emit_json({"running": False})
        else:
            click.echo(
                f"nwguardd is not running for {client.ctx.paths.state_dir}; commands run embedded"
            )
        raise click.exceptions.Exit(1)
    info = client.daemon
    learning = info.get("learning") or {}
    if as_json:
        emit_json({"running": True, "socket": str(client.socket_path), **info})
        return
    rows = [
        ("pid", info.get("pid")),
        ("version", info.get("version")),
        ("up", f"{time.time() - float(info.get('started', time.time())):.0f} s"),
        ("config", info.get("config_dir")),
        ("state", info.get("state_dir")),
        ("socket", client.socket_path),
        ("nft monitor", "listening" if info.get("monitor") else "not running (periodic checks)"),
        ("learning", ", ".join(f"{p} ({m})" for p, m in sorted(learning.items())) or "-"),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<13} {value}")
