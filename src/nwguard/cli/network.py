"""``net-*`` commands, named and formatted like virsh's."""

from __future__ import annotations

import datetime

import click

from nwguard.cli.common import edit_loop, table
from nwguard.cli.group import emit_json, main_group, print_dry_run
from nwguard.cli.main import Obj


def _yn(value: bool) -> str:
    return "yes" if value else "no"


@main_group.command("net-define")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def net_define(obj: Obj, file: str) -> None:
    """Define (or redefine) a virtual network from libvirt network XML."""
    with open(file, "rb") as f:
        net = obj.client.net_define(f.read(), file=file)
    click.echo(f"Network {net.name} defined from {file}")


@main_group.command("net-undefine")
@click.argument("name")
@click.pass_obj
def net_undefine(obj: Obj, name: str) -> None:
    """Remove an inactive network's configuration."""
    obj.client.net_undefine(name)
    click.echo(f"Network {name} has been undefined")


@main_group.command("net-start")
@click.argument("name")
@click.pass_obj
def net_start(obj: Obj, name: str) -> None:
    """Start a network: bridge, addresses, dnsmasq, forwarding and firewall, all or nothing."""
    result = obj.client.net_start(name)
    if print_dry_run(obj, result):  # the network's own table, as one JSON batch
        return
    click.echo(f"Network {name} started")


@main_group.command("net-destroy")
@click.argument("name")
@click.pass_obj
def net_destroy(obj: Obj, name: str) -> None:
    """Stop a network and remove its bridge, dnsmasq, rules and runtime files."""
    result = obj.client.net_destroy(name)
    if print_dry_run(obj, result):
        return
    click.echo(f"Network {name} destroyed")


@main_group.command("net-list")
@click.option("--all", "all_", is_flag=True, help="Inactive networks too.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def net_list(obj: Obj, all_: bool, as_json: bool) -> None:
    """List networks (active ones unless --all)."""
    records = obj.client.net_list(all=all_)
    if as_json:
        return emit_json([r.to_json() for r in records])
    rows = [(r.name, r.state, _yn(r.autostart), _yn(r.persistent)) for r in records]
    click.echo(table(("Name", "State", "Autostart", "Persistent"), rows))


@main_group.command("net-info")
@click.argument("name")
@click.pass_obj
def net_info(obj: Obj, name: str) -> None:
    """Basic information about a network."""
    info = obj.client.net_info(name)
    for key, value in info.items():
        text = _yn(value) if isinstance(value, bool) else (value or "")
        click.echo(f"{key + ':':<15} {text}")


@main_group.command("net-dumpxml")
@click.argument("name")
@click.option("--inactive", is_flag=True, help="The persistent config, not the running one.")
@click.pass_obj
def net_dumpxml(obj: Obj, name: str, inactive: bool) -> None:
    """Print a network's XML."""
    click.echo(obj.client.net_dumpxml(name, inactive=inactive), nl=False)


@main_group.command("net-edit")
@click.argument("name")
@click.pass_obj
def net_edit(obj: Obj, name: str) -> None:
    """Edit a network's XML in $EDITOR; nothing is saved until the result is valid."""
    client = obj.client
    done = edit_loop(
        client.net_edit_xml(name), lambda text: client.net_redefine(name, text), "networks"
    )
    if done is None:
        click.echo(f"Network {name} XML configuration not changed.")
        return
    click.echo(f"Network {name} XML configuration edited.")


@main_group.command("net-autostart")
@click.argument("name")
@click.option("--disable", is_flag=True, help="Do not start the network automatically.")
@click.pass_obj
def net_autostart(obj: Obj, name: str, disable: bool) -> None:
    """Mark a network to be started automatically (by the daemon at boot)."""
    obj.client.net_autostart(name, enable=not disable)
    click.echo(f"Network {name} {'unmarked' if disable else 'marked'} as autostarted")


@main_group.command("net-dhcp-leases")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def net_dhcp_leases(obj: Obj, name: str, as_json: bool) -> None:
    """The DHCP leases handed out on an active network."""
    leases = obj.client.net_dhcp_leases(name)
    if as_json:
        return emit_json([lease.to_json() for lease in leases])
    rows = [
        (
            datetime.datetime.fromtimestamp(lease.expiry).strftime("%Y-%m-%d %H:%M:%S")
            if lease.expiry
            else "never",
            lease.mac or "-",
            lease.protocol,
            f"{lease.ip}/{lease.prefix}",
            lease.hostname or "-",
            lease.client_id or "-",
        )
        for lease in leases
    ]
    headers = (
        "Expiry Time",
        "MAC address",
        "Protocol",
        "IP address",
        "Hostname",
        "Client ID or DUID",
    )
    click.echo(table(headers, rows))
