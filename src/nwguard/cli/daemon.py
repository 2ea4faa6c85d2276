"""``nwguard daemon-status``: whether commands go through ``nwguardd`` and what it is doing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from nwguard.cli.group import emit_json, main_group
from nwguard.cli.main import Obj
from nwguard.errors import NwguardError

if TYPE_CHECKING:
    from nwguard.engine.context import Context


@main_group.command("daemon-status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def daemon_status(obj: Obj, as_json: bool) -> None:
    """Show whether nwguardd serves this state directory (exit 1 when it does not)."""
    from nwguard.daemon.proxy import DaemonProxy

    client = obj.client
    if not isinstance(client, DaemonProxy):
        backend = _backend(client.ctx)
        if as_json:
            emit_json({"running": False, "backend": backend})
        else:
            click.echo(
                f"nwguardd is not running for {client.ctx.paths.state_dir}; commands run embedded"
            )
            click.echo(f"{'backend:':<13} {_describe(backend)}")
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
        ("backend", _describe(info.get("backend") or {})),
        ("nft monitor", "listening" if info.get("monitor") else "not running (periodic checks)"),
        ("learning", ", ".join(f"{p} ({m})" for p, m in sorted(learning.items())) or "-"),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<13} {value}")


def _backend(ctx: Context) -> dict[str, Any]:
    """The backend an embedded command would use (or why there is none)."""
    try:
        return dict(ctx.backend().to_json())
    except NwguardError as exc:
        return {"name": None, "error": str(exc)}


def _describe(backend: dict[str, Any]) -> str:
    if backend.get("error"):
        return f"none ({backend['error']})"
    variant = f" ({backend['variant']} tools)" if backend.get("variant") else ""
    return f"{backend.get('name')}{variant}, from {backend.get('source')}"
