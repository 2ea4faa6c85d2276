"""``nwguard iface-attach/-detach/-list``: guest interfaces from libvirt ``<interface>`` XML."""

from __future__ import annotations

from pathlib import Path

import click

from nwguard.cli.group import emit_json, main_group, print_dry_run
from nwguard.cli.main import Obj


@main_group.command("iface-attach")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--veth-peer", metavar="NAME", help="Create a veth pair with this peer (default: a tap)."
)
@click.pass_obj
def iface_attach(obj: Obj, file: str, veth_peer: str | None) -> None:
    """Create and plug the port of an <interface> XML FILE and bind its filter."""
    result = obj.client.iface_attach(Path(file).read_bytes(), file, veth_peer)
    if print_dry_run(obj, result):
        return
    rec = result.interface
    where = f" to {rec.bridge}" if rec.bridge else ""
    click.echo(
        f"Interface {rec.dev} attached{where}"
        + (f" with filter {rec.filter}" if rec.filter else "")
    )


@main_group.command("iface-detach")
@click.argument("dev")
@click.pass_obj
def iface_detach(obj: Obj, dev: str) -> None:
    """Unbind DEV's filter and remove DEV if nwguard created it."""
    obj.client.iface_detach(dev)
    click.echo(f"Interface {dev} detached")


@main_group.command("iface-list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def iface_list(obj: Obj, as_json: bool) -> None:
    """List attached interfaces: port, network/bridge, MAC, IPs, filter."""
    recs = obj.client.iface_list()
    if as_json:
        emit_json([r.to_json() for r in recs])
        return
    click.echo(f" {'Port':<16}{'Network':<14}{'Bridge':<14}{'MAC':<19}{'IP':<22}Filter")
    click.echo("-" * 100)
    for r in recs:
        click.echo(
            f" {r.dev:<16}{r.network or '-':<14}{r.bridge or '-':<14}{r.mac:<19}"
            f"{','.join(r.ips) or '-':<22}{r.filter or '-'}"
        )
