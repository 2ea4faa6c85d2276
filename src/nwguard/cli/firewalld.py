"""``nwguard firewalld-install`` / ``firewalld-status``: nwguard's firewalld zones and what
firewalld says (over D-Bus, ``NWGUARD_FIREWALLD_BUS`` names another bus than the system's)."""

from __future__ import annotations

from pathlib import Path

import click

from nwguard.cli.group import emit_json, main_group


@main_group.command("firewalld-install")
@click.option(
    "--config-dir", "etc", type=click.Path(file_okay=False, path_type=Path),
    default=Path("/etc/firewalld"), show_default=True, help="firewalld's configuration directory.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace zone files that differ from nwguard's.")
def firewalld_install(etc: Path, force: bool) -> None:
    """Install the libvirt and libvirt-routed zones and their policies (reloads firewalld)."""
    from nwguard.host import firewalld

    for path, what in firewalld.install_zones(etc, force=force):
        click.echo(f"{path}: {what}")


@main_group.command("firewalld-status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def firewalld_status(as_json: bool) -> None:
    """Whether firewalld runs, its version, backend, and nwguard's zones (exit 1: not running)."""
    from nwguard.host import firewalld

    fw = firewalld.default()
    if not fw.running():
        if as_json:
            emit_json({"running": False})
        else:
            click.echo("firewalld is not running")
        raise click.exceptions.Exit(1)
    zones, policies = fw.zones(), fw.policies()
    present = {z: z in zones for z in (firewalld.LIBVIRT_ZONE, firewalld.ROUTED_ZONE)}
    present[firewalld.ROUTED_OUT_POLICY] = firewalld.ROUTED_OUT_POLICY in policies
    info: dict[str, object] = {
        "running": True, "version": fw.version(), "backend": fw.backend(),
        "present": present,
    }  # fmt: skip
    if as_json:
        emit_json(info)
        return
    click.echo(f"firewalld {info['version']}, {info['backend']} backend")
    for name, there in present.items():
        click.echo(f"  {name}: {'present' if there else 'missing'}")
