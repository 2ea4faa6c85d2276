"""``nwguard nwfilter-binding-*`` commands (virsh names and output)."""

from __future__ import annotations

from pathlib import Path

import click

from nwguard.cli.group import emit_json, main_group, print_dry_run
from nwguard.cli.main import Obj, binding_created, binding_deleted


@main_group.command("nwfilter-binding-create")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def binding_create(obj: Obj, file: str) -> None:
    """Bind a filter to a port from a <filterbinding> XML FILE."""
    data = Path(file).read_bytes()
    result = obj.client.nwfilter_binding_create(data, file)
    if not print_dry_run(obj, result):
        click.echo(binding_created(result.binding.portdev, file))


@main_group.command("nwfilter-binding-delete")
@click.argument("portdev")
@click.pass_obj
def binding_delete(obj: Obj, portdev: str) -> None:
    """Delete the filter binding of PORTDEV and remove all its rules."""
    result = obj.client.nwfilter_binding_delete(portdev)
    if not print_dry_run(obj, result):
        click.echo(binding_deleted(portdev))


@main_group.command("nwfilter-binding-list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def binding_list(obj: Obj, as_json: bool) -> None:
    """List filter bindings: port and filter."""
    rows = [(b.portdev, b.filterref.filter) for b in obj.client.nwfilter_binding_list()]
    if as_json:
        emit_json([{"portdev": p, "filter": f} for p, f in rows])
        return
    click.echo(f" {'Port Dev':<20} Filter")
    click.echo("-" * 40)
    for p, f in rows:
        click.echo(f" {p:<20} {f}")


@main_group.command("nwfilter-binding-dumpxml")
@click.argument("portdev")
@click.pass_obj
def binding_dumpxml(obj: Obj, portdev: str) -> None:
    """Print the <filterbinding> XML of PORTDEV."""
    click.echo(obj.client.nwfilter_binding_dumpxml(portdev), nl=False)
