"""``nwguard cni-install``: put the CNI plugin into a CNI plugin directory.

The plugin file is a small shell script: it answers VERSION itself (libcni asks before every
ADD, CHECK and DEL, twice with podman 4.3: dash takes 1 ms, Python 7) and runs this
interpreter on this copy of nwguard for the rest, with ``-IS``: the runtime's environment,
PYTHONPATH and user site-packages do not change it (``-I``), and site-packages load only when
the plugin binds in-process (``-S``). The CNI ``type`` of the plugin is its file name,
``nwguard``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from nwguard.cli.group import main_group

PLUGIN = "nwguard"
MARK = "# written by nwguard cni-install"


# The interpreter's code is fixed; the package root comes as its argument.
_RUN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from nwguard.cni.plugin import main; main()"
)


def plugin_script(python: str, package_root: str) -> str:
    """The plugin executable's text for an interpreter and the directory holding ``nwguard``
    (install-time paths, quoted for the shell)."""
    from nwguard.cni.plugin import version_answer

    return (
        f"#!/bin/sh\n{MARK}\n"
        'if [ "$CNI_COMMAND" = VERSION ]; then\n'
        f"    printf '%s' {shlex.quote(version_answer())}\n"
        "    exit 0\n"
        "fi\n"
        f"exec {shlex.quote(python)} -IS -c {shlex.quote(_RUN)} {shlex.quote(package_root)}\n"
    )


def install(directory: Path, force: bool = False) -> Path:
    """Write the plugin into ``directory`` (refusing to replace a file it did not write)."""
    target = directory / PLUGIN
    if target.exists() and not force and MARK not in target.read_text(errors="replace"):
        raise click.ClickException(f"{target} exists and was not written by nwguard; use --force")
    import nwguard

    root = str(Path(nwguard.__file__).resolve().parents[1])
    directory.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{PLUGIN}.{os.getpid()}")
    tmp.write_text(plugin_script(sys.executable, root))
    tmp.chmod(0o755)
    tmp.replace(target)
    return target


@main_group.command("cni-install")
@click.option(
    "--dir",
    "directory",
    default="/opt/cni/bin",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The CNI plugin directory.",
)
@click.option("--force", is_flag=True, help="Replace a file named nwguard not written by us.")
def cni_install(directory: str, force: bool) -> None:
    """Install the nwguard CNI plugin (chain it after bridge; see the README)."""
    click.echo(f"CNI plugin installed as {install(Path(directory), force)}")
