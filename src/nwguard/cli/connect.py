"""Choose how the CLI reaches the engine: the daemon's socket if it answers, else embedded."""

from __future__ import annotations

from nwguard.api import Client
from nwguard.engine.context import Context
from nwguard.state.paths import Paths


def connect(config_dir: str | None, state_dir: str | None, dry_run: bool = False) -> Client:
    """Return a client: a daemon proxy when ``nwguardd`` answers, else an embedded Client.

    The embedded client's services (the engine, the compiler) are built only without one."""
    ctx = Context(Paths.from_env(config_dir, state_dir), dry_run=dry_run)
    if ctx.paths.socket.exists() or ctx.paths.socket_ro.exists():
        from nwguard.daemon.proxy import proxy_for

        proxy = proxy_for(ctx)
        if proxy is not None:
            return proxy
    return Client(ctx)
