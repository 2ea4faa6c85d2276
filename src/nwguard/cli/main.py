"""The ``nwguard`` command: virsh-style subcommands over :class:`nwguard.api.Client`.

Each feature area adds its commands from its own module (``cli.nwfilter``, ``cli.binding``,
``cli.network``, ``cli.iface``, ``cli.daemon``) through :func:`register`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from nwguard.errors import NwguardError

if TYPE_CHECKING:
    from nwguard.api import Client
    from nwguard.engine.results import Change


class Obj:
    """Carried in click's context: the global options and the client, made on first use."""

    def __init__(self, config_dir: str | None, state_dir: str | None, dry_run: bool) -> None:
        self.config_dir, self.state_dir, self.dry_run = config_dir, state_dir, dry_run
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The embedded client, or a proxy to nwguardd when it serves this state directory."""
        if self._client is None:
            from nwguard.cli.connect import connect

            self._client = connect(self.config_dir, self.state_dir, dry_run=self.dry_run)
        return self._client


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config-dir",
    envvar="NWGUARD_CONFIG_DIR",
    help="Persistent configuration (default /etc/nwguard).",
)
@click.option(
    "--state-dir", envvar="NWGUARD_STATE_DIR", help="Runtime state (default /run/nwguard)."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the nftables batch a change would apply; apply nothing."
)
@click.version_option(package_name="nwguard")
@click.pass_context
def main_group(
    ctx: click.Context, config_dir: str | None, state_dir: str | None, dry_run: bool
) -> None:
    """nwguard: libvirt's network filters and virtual networks, on nftables."""
    ctx.obj = Obj(config_dir, state_dir, dry_run)


def print_dry_run(obj: Obj, result: Change) -> bool:
    """With --dry-run, print the batch ``result`` would send to the kernel; True if it did.

    The output is JSON: ``nftables`` is the transaction (``nft -j -f`` takes it as is) and
    ``nft_syntax_first``, when present, the nft-syntax commands run just before it (sets
    declared with ``typeof``, which libnftables 1.0.6 reads only in that syntax).
    """
    if not obj.dry_run:
        return False
    from nwguard.backends.nft.executor import plan  # the one place a batch is rendered
    from nwguard.backends.nft.render import to_nft

    text, cmds = plan(to_nft(result.batch)) if result.batch is not None else ([], [])
    out: dict[str, Any] = {"nftables": cmds}
    if text:
        out["nft_syntax_first"] = text
    click.echo(json.dumps(out, indent=2))
    return True


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def register() -> None:
    import importlib

    for mod in (
        "cli.nwfilter", "cli.binding", "cli.network", "cli.iface", "cli.daemon", "cli.explain", "cli.check",
        "cli.stats", "cli.drops",
    ):  # fmt: skip
        try:
            importlib.import_module(f"nwguard.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nwguard.{mod}":
                raise


def main(argv: list[str] | None = None) -> None:
    register()
    try:
        status = main_group.main(args=argv, prog_name="nwguard", standalone_mode=False)
        # Without standalone mode click *returns* the code of ctx.exit(n) / raise Exit(n).
        if isinstance(status, int) and status:
            sys.exit(status)
    except NwguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_status)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(1)  # every error, usage errors too, exits 1 (as virsh does)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
