"""``nwguard nwfilter-*``: virsh's network-filter commands, over :class:`nwguard.api.Client`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nwguard.cli.common import edit_loop
from nwguard.cli.group import emit_json, main_group, print_dry_run
from nwguard.cli.main import Obj, filter_table
from nwguard.errors import NwguardError


def _read_input(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise NwguardError(f"cannot read {file}: {exc.strerror}") from None


@main_group.command("nwfilter-define")
@click.argument("file", metavar="FILE")
@click.option(
    "--lenient",
    is_flag=True,
    default=None,
    help="Ignore unknown attributes and elements as libvirt does, with a warning for each "
    "(default: 'lenient' of nwguard.conf, else strict).",
)
@click.pass_obj
def nwfilter_define(obj: Obj, file: str, lenient: bool | None) -> None:
    """Define or update a network filter from an XML FILE ('-': stdin).

    A filter of the same name is updated; its UUID must be the same (or absent).
    """
    result = obj.client.nwfilter_define(_read_input(file), file=file, lenient=lenient)
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
    if print_dry_run(obj, result):
        return
    click.echo(f"Network filter {result.filter.name} defined from {file}")
    _print_findings(obj, result.filter.name, file)


def _print_findings(obj: Obj, name: str, file: str) -> None:
    """nwfilter-check's findings on a filter just defined, as warnings on stderr."""
    from nwguard.cli.check import format_findings
    from nwguard.explain.check import check

    filters = {f.name: f for f in obj.client.nwfilter_list()}
    for line in format_findings(check(filters, name), {name: file}):
        click.echo(f"warning: {line}", err=True)


@main_group.command("nwfilter-undefine")
@click.argument("filter_", metavar="NAME|UUID")
@click.pass_obj
def nwfilter_undefine(obj: Obj, filter_: str) -> None:
    """Undefine a network filter (refused while another filter or a port uses it)."""
    result = obj.client.nwfilter_undefine(filter_)
    if print_dry_run(obj, result):
        return
    click.echo(f"Network filter {result.filter.name} undefined")


@main_group.command("nwfilter-list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {uuid, name}.")
@click.pass_obj
def nwfilter_list(obj: Obj, as_json: bool) -> None:
    """List network filters (UUID and name, sorted by name)."""
    if as_json:
        emit_json([{"uuid": f.uuid, "name": f.name} for f in obj.client.nwfilter_list()])
        return
    click.echo(filter_table(obj.client))


@main_group.command("nwfilter-dumpxml")
@click.argument("filter_", metavar="NAME|UUID")
@click.pass_obj
def nwfilter_dumpxml(obj: Obj, filter_: str) -> None:
    """Print a network filter's XML."""
    click.echo(obj.client.nwfilter_dumpxml(filter_), nl=False)


@main_group.command("nwfilter-edit")
@click.argument("filter_", metavar="NAME|UUID")
@click.pass_obj
def nwfilter_edit(obj: Obj, filter_: str) -> None:
    """Edit a network filter's XML in $VISUAL or $EDITOR (default vi).

    Nothing is saved until the edited XML is a valid definition; after an error you may edit
    again (y) or give up (n).
    """
    client = obj.client
    done = edit_loop(
        client.nwfilter_dumpxml(filter_), lambda text: client.nwfilter_define(text), "filters"
    )
    if done is None:
        name = client.nwfilter_get(filter_).name
        click.echo(f"Network filter {name} XML configuration not changed.")
        return
    click.echo(f"Network filter {done.filter.name} XML configuration edited.")
