"""What several command modules share: virsh's table layout and its edit loop (imported
by the path without click, so click and the editor's modules load where they are used)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nwguard.errors import NwguardError

_T = TypeVar("_T")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """virsh's table: a leading space, columns three spaces apart, a dashed rule.

    >>> print(table(["UUID", "Name"], [["u", "a"]]))
     UUID   Name
    --------------
     u      a
    """
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return (" " + "   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))).rstrip()

    return "\n".join([line(headers), "-" * (sum(widths) + 3 * len(widths)), *map(line, rows)])


_EDIT_HELP = """y - yes, start editor again
n - no, throw away my changes
? - print this help"""


def edit_loop(original: str, save: Callable[[str], _T], what: str) -> _T | None:
    """virsh's ``*-edit``: edit ``original`` in $VISUAL or $EDITOR (default vi) until
    ``save(text)`` accepts it; return what it returned, or None if the text is unchanged.

    After an error the user may edit again (y) or give up (n, or end of input: exit 1).
    ``what`` names the objects in the prompt's help ("filters").
    """
    import tempfile

    import click

    fd, tmp = tempfile.mkstemp(prefix="nwguard-edit-", suffix=".xml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(original)
        while True:
            _run_editor(tmp)
            edited = Path(tmp).read_text()
            if edited == original:
                return None
            try:
                return save(edited)
            except NwguardError as exc:
                click.echo(f"error: {exc}", err=True)
                if not _ask_again(what):
                    raise click.exceptions.Exit(1) from None
    finally:
        os.unlink(tmp)


def _run_editor(path: str) -> None:
    import shlex
    import subprocess

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        argv = [*shlex.split(editor), path]
        rc = subprocess.run(argv, check=False).returncode
    except (OSError, ValueError) as exc:
        raise NwguardError(f"cannot run editor '{editor}': {exc}") from None
    if rc != 0:
        raise NwguardError(f"editor '{editor}' exited with status {rc}; nothing saved")


def _ask_again(what: str) -> bool:
    """virsh's "Try again? [y,n,i,f,?]" prompt, answered on stdin; end of input means no."""
    import click

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
            click.echo(f"nwguard always validates {what}; answer y or n")
        else:
            click.echo(_EDIT_HELP)
