"""``nwguard backend-switch NAME``: move the host to the other firewall backend."""

from __future__ import annotations

import click

from nwguard.cli.group import emit_json, main_group
from nwguard.cli.main import Obj
from nwguard.errors import ConflictError


@main_group.command("backend-switch")
@click.argument("name", type=click.Choice(["nftables", "iptables"]))
@click.option(
    "--variant", type=click.Choice(["nft", "legacy"]), help="The iptables tools (default nft)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def backend_switch(obj: Obj, name: str, variant: str | None, as_json: bool) -> None:
    """Move every bound port and active network to backend NAME, remove the old one's rules
    (no moment without filtering) and set firewall_backend in nwguard.conf."""
    from nwguard.daemon.proxy import DaemonProxy
    from nwguard.engine.switch import switch_backend

    if obj.dry_run:
        raise click.UsageError("backend-switch has no --dry-run")
    client = obj.client
    if isinstance(client, DaemonProxy):
        raise ConflictError("nwguardd serves this state directory: stop it, switch, start it")
    done = switch_backend(client.ctx, name, variant)
    if as_json:
        emit_json({"old": done.old.to_json(), "new": done.new.to_json(), "ports": done.ports,
                   "networks": list(done.networks)})  # fmt: skip
        return
    if (done.old.name, done.old.variant) == (done.new.name, done.new.variant):
        click.echo(f"the firewall backend is {name} already")
        return
    click.echo(
        f"firewall backend switched from {done.old.name} to {done.new.name}: "
        f"{done.ports} port(s), {len(done.networks)} network(s) moved"
    )
