"""The ``nwguard`` command's click group: virsh-style subcommands over the API client.

Each feature area adds its commands from its own module of this package (``cli.nwfilter``,
``cli.binding``, ...). A one-shot command imports only the module of the command it runs
(:data:`COMMANDS`: start-up is measured); help, completion and unknown names import them all
(:func:`register`).
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import TYPE_CHECKING, Any

import click

from nwguard.cli.main import Obj
from nwguard.errors import NwguardError

if TYPE_CHECKING:
    from nwguard.engine.results import Change


# command name -> module of this package that defines it (tests/unit/test_cli_lazy.py checks
# it against what register() finds)
COMMANDS = {
    "backend-switch": "backend",
    **dict.fromkeys(
        ["nwfilter-binding-create", "nwfilter-binding-delete", "nwfilter-binding-list",
         "nwfilter-binding-dumpxml"], "binding"),
    **dict.fromkeys(["nwfilter-check", "nwfilter-graph"], "check"),
    "cni-install": "cni",
    "daemon-status": "daemon",
    "drops": "drops",
    "explain": "explain",
    **dict.fromkeys(["firewalld-install", "firewalld-status"], "firewalld"),
    **dict.fromkeys(["iface-attach", "iface-detach", "iface-list"], "iface"),
    **dict.fromkeys(
        ["net-define", "net-undefine", "net-start", "net-destroy", "net-list", "net-info",
         "net-dumpxml", "net-edit", "net-autostart", "net-dhcp-leases"], "network"),
    **dict.fromkeys(
        ["nwfilter-define", "nwfilter-undefine", "nwfilter-list", "nwfilter-dumpxml",
         "nwfilter-edit"], "nwfilter"),
    "qemu-attach": "qemu",
    **dict.fromkeys(["nwfilter-binding-stats", "top"], "stats"),
}  # fmt: skip


class _LazyGroup(click.Group):
    """Imports a command's module when the command is looked up, not before."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = COMMANDS.get(cmd_name)
            if module is None:
                register()  # an unknown name: its error lists every command
            else:
                importlib.import_module(f"nwguard.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        register()
        return super().list_commands(ctx)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config-dir",
    envvar="NWGUARD_CONFIG_DIR",
    help="Persistent configuration (default /etc/nwguard).",
)
@click.option(
    "--state-dir", envvar="NWGUARD_STATE_DIR", help="Runtime state (default /run/nwguard)."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what a change would send to the kernel (nftables JSON or iptables restore "
    "inputs); apply nothing.",
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

    The output is JSON. On nftables, ``nftables`` is the transaction (``nft -j -f`` takes it
    as is) and ``nft_syntax_first``, when present, the nft-syntax commands run just before it
    (sets declared with ``typeof``, which libnftables 1.0.6 reads only in that syntax). On
    iptables, ``restore`` lists each tool's command line and its exact stdin.
    """
    if not obj.dry_run:
        return False
    ctx = obj.client.ctx
    if ctx.backend().name == "iptables":
        click.echo(json.dumps(_iptables_dry_run(obj, result), indent=2))
        return True
    from nwguard.backends.nft.executor import plan  # the one place a batch is rendered
    from nwguard.backends.nft.render import to_nft

    text, cmds = plan(to_nft(result.batch)) if result.batch is not None else ([], [])
    out: dict[str, Any] = {"nftables": cmds}
    if text:
        out["nft_syntax_first"] = text
    click.echo(json.dumps(out, indent=2))
    return True


def _iptables_dry_run(obj: Obj, result: Change) -> dict[str, Any]:
    from nwguard.backends.ebiptables.executor import EbiptablesExecutor

    ctx = obj.client.ctx
    choice = ctx.backend()
    executor = ctx.engine().executor  # it plans a diff on the state the engine has applied
    assert isinstance(executor, EbiptablesExecutor)
    out: dict[str, Any] = {"backend": choice.name, "variant": choice.variant, "restore": []}
    if result.batch is None:
        return out
    from nwguard.ir.nodes import Batch

    if isinstance(result.batch, Batch):  # a network's rules
        from nwguard.backends.ebiptables.network import NetworkFirewall

        cmds = NetworkFirewall(runner=executor.runner).restore_commands(result.batch)
    else:
        cmds = executor.restore_commands(result.batch)
    for argv, text in cmds:
        out["restore"].append({"command": argv, "input": text})
    return out


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


# modules of this package that add no commands
_NOT_COMMANDS = {"main", "group", "common", "connect"}


def register() -> None:
    """Import every command module of this package (each adds its commands to main_group)."""
    import pkgutil
    from pathlib import Path

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in _NOT_COMMANDS:
            importlib.import_module(f"nwguard.cli.{info.name}")


def run(argv: list[str] | None) -> None:
    """Parse ``argv`` with click and run the command (every error: one line, exit status)."""
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
