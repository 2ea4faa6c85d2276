"""Choose how the CLI reaches the engine: the daemon's socket if it answers, else embedded."""

from __future__ import annotations

from nwguard.api import Client


def connect(config_dir: str | None, state_dir: str | None, dry_run: bool = False) -> Client:
    """Return a client: a daemon proxy when ``nwguardd`` answers, else an embedded Client."""
    client = Client.open(config_dir, state_dir, dry_run=dry_run)
    paths = client.ctx.paths
    if not (paths.socket.exists() or paths.socket_ro.exists()):
        return client  # no daemon: don't even load the proxy
    from nwguard.daemon.proxy import maybe_proxy

    return maybe_proxy(client) or client
