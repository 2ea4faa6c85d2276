"""``nwguard nwfilter-*``: virsh's network-filter commands, over the client's FilterOps."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from nwguard.cli.main import Obj, emit_json, main_group, print_dry_run
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
@click.pass_obj
def nwfilter_define(obj: Obj, file: str) -> None:
    """Define or update a network filter from an XML FILE ('-': stdin).

    A filter of the same name is updated; its UUID must be the same (or absent).
    """
    f = obj.client.nwfilter_define(_read_input(file), file=file)
    if print_dry_run(obj):
        return
    click.echo(f"Network filter {f.name} defined from {file}")


@main_group.command("nwfilter-undefine")
@click.argument("filter_", metavar="NAME|UUID")
@click.pass_obj
def nwfilter_undefine(obj: Obj, filter_: str) -> None:
    """Undefine a network filter (refused while another filter or a port uses it)."""
    f = obj.client.nwfilter_undefine(filter_)
    if print_dry_run(obj):
        return
    click.echo(f"Network filter {f.name} undefined")


@main_group.command("nwfilter-list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {uuid, name}.")
@click.pass_obj
def nwfilter_list(obj: Obj, as_json: bool) -> None:
    """List network filters (UUID and name, sorted by name)."""
    filters = obj.client.nwfilter_list()
    if as_json:
        emit_json([{"uuid": f.uuid, "name": f.name} for f in filters])
        return
    click.echo(format_table(["UUID", "Name"], [[f.uuid, f.name] for f in filters]), nl=False)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """virsh's table layout: a space before each cell, columns two spaces apart, dashes.

    >>> print(format_table(["UUID", "Name"], [["u", "a"]]), end="")
     UUID   Name
    --------------
     u      a
    """
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [f" {c}".ljust(w + 3) for c, w in zip(cells[:-1], widths, strict=False)]
        return "".join(padded) + f" {cells[-1]}\n"

    return line(header) + "-" * sum(w + 3 for w in widths) + "\n" + "".join(map(line, rows))


@main_group.command("nwfilter-dumpxml")
@click.argument("filter_", metavar="NAME|UUID")
@click.pass_obj
def nwfilter_dumpxml(obj: Obj, filter_: str) -> None:
    """Print a network filter's XML."""
    click.echo(obj.client.nwfilter_dumpxml(filter_), nl=False)


_EDIT_HELP = """y - yes, start editor again
n - no, throw away my changes
? - print this help"""


@main_group.command("nwfilter-edit")
@click.argument("filter_", metavar="NAME|UUID")
@click.pass_obj
def nwfilter_edit(obj: Obj, filter_: str) -> None:
    """Edit a network filter's XML in $VISUAL or $EDITOR (default vi).

    Nothing is saved until the edited XML is a valid definition; after an error you may edit
    again (y) or give up (n).
    """
    client = obj.client
    original = client.nwfilter_dumpxml(filter_)
    fd, tmp = tempfile.mkstemp(prefix="nwguard-nwfilter-", suffix=".xml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(original)
        while True:
            _run_editor(tmp)
            edited = Path(tmp).read_text()
            if edited == original:
                name = client.nwfilter_get(filter_).name
                click.echo(f"Network filter {name} XML configuration not changed.")
                return
            try:
                f = client.nwfilter_define(edited)
            except NwguardError as exc:
                click.echo(f"error: {exc}", err=True)
                if not _ask_again():
                    raise click.exceptions.Exit(1) from None
                continue
            click.echo(f"Network filter {f.name} XML configuration edited.")
            return
    finally:
        os.unlink(tmp)


def _run_editor(path: str) -> None:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        argv = [*shlex.split(editor), path]
        rc = subprocess.run(argv, check=False).returncode
    except (OSError, ValueError) as exc:
        raise NwguardError(f"cannot run editor '{editor}': {exc}") from None
    if rc != 0:
        raise NwguardError(f"editor '{editor}' exited with status {rc}; nothing saved")


def _ask_again() -> bool:
    """virsh's "Try again? [y,n,i,f,?]" prompt, answered on stdin; end of input means no."""
    while True:
        click.echo("Failed. Try again? [y,n,i,f,?]: ", nl=False)
        answer = sys.stdin.readline()
        if not answer:
            click.echo("")
            return False
        answer = answer.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        if answer in ("i", "f"):
            click.echo("nwguard always validates filters; answer y or n")
        else:
            click.echo(_EDIT_HELP)
