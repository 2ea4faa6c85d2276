"""The ``nwguard`` command: virsh-style subcommands over :class:`nwguard.api.Client`.

The commands are click commands (:mod:`nwguard.cli.group`). The three an orchestrator runs
once per port, ``nwfilter-binding-create FILE``, ``nwfilter-binding-delete PORTDEV`` and
``nwfilter-list``, given with nothing but ``--config-dir``/``--state-dir``, run without
loading click (start-up is measured): same output, same errors, same exit status. Any other
command line, or any option these do not take (``--help``, ``--json``, ``--dry-run``...),
goes to click.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nwguard.errors import NwguardError

if TYPE_CHECKING:
    from nwguard.api import Client
    from nwguard.daemon.proxy import DaemonProxy


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


# The output of the commands with a path without click (their click commands print the same).


def binding_created(portdev: str, file: str) -> str:
    return f"Network filter binding on {portdev} created from {file}"


def binding_deleted(portdev: str) -> str:
    return f"Network filter binding on {portdev} deleted"


def filter_table(client: Client) -> str:
    from nwguard.cli.common import table

    served = _served(client)
    if served is None:
        rows = [[f.uuid, f.name] for f in client.nwfilter_list()]
    else:  # the filters' XML from nwguardd: their name and UUID, without the model's parser
        from nwguard.daemon.proxy import xml_outline

        rows = []
        for item in served.call_raw("nwfilter_list"):
            attrs, children = xml_outline(item["$filter"])
            rows.append([children["uuid"][1], attrs["name"]])
    return table(["UUID", "Name"], rows)


def _served(client: Client) -> DaemonProxy | None:
    """``client`` if it is a proxy to nwguardd (whose module is then loaded already)."""
    proxy = sys.modules.get("nwguard.daemon.proxy")
    return client if proxy is not None and isinstance(client, proxy.DaemonProxy) else None


def _create(obj: Obj, file: str) -> str:
    from pathlib import Path

    data = Path(file).read_bytes()
    served = _served(obj.client)
    if served is None:
        result = obj.client.nwfilter_binding_create(data, file)
        return binding_created(result.binding.portdev, file)
    from nwguard.daemon.proxy import xml_outline

    raw = served.call_raw("nwfilter_binding_create", data, file)
    _, children = xml_outline(raw["f"]["binding"]["$binding"])
    return binding_created(children["portdev"][0]["name"], file)


def _delete(obj: Obj, portdev: str) -> str:
    served = _served(obj.client)
    if served is None:
        obj.client.nwfilter_binding_delete(portdev)
    else:
        served.call_raw("nwfilter_binding_delete", portdev)
    return binding_deleted(portdev)


_FAST: dict[str, tuple[int, Callable[..., str]]] = {
    "nwfilter-binding-create": (1, _create),
    "nwfilter-binding-delete": (1, _delete),
    "nwfilter-list": (0, lambda obj: filter_table(obj.client)),
}
_GLOBAL = {"--config-dir": "NWGUARD_CONFIG_DIR", "--state-dir": "NWGUARD_STATE_DIR"}


def _fast_plan(args: list[str]) -> tuple[Obj, Callable[..., str], list[str]] | None:
    """``args`` as (options, command, its arguments) if it is a command line of the fast
    path, else None. Options as click reads them: the last one wins, else the variable."""
    values: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        opt, eq, value = args[i].partition("=")
        if opt not in _GLOBAL:
            return None
        if not eq:
            if i + 1 == len(args):
                return None
            i += 1
            value = args[i]
        if not value or value.startswith("-"):
            return None
        values[opt] = value
        i += 1
    if i == len(args) or args[i] not in _FAST:
        return None
    nargs, run = _FAST[args[i]]
    rest = args[i + 1 :]
    if len(rest) != nargs or any(not a or a.startswith("-") for a in rest):
        return None
    if args[i] == "nwfilter-binding-create" and os.path.isdir(rest[0]):
        return None  # click's error for a directory
    config, state = (values.get(o) or os.environ.get(v) or None for o, v in _GLOBAL.items())
    return Obj(config, state, False), run, rest


def main(argv: list[str] | None = None) -> None:
    """The command line ``argv`` (default: this process's, which then ends on a one-shot
    command's success without the interpreter's teardown: see :func:`_exit_now`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    plan = _fast_plan(args)
    if plan is None:
        from nwguard.cli.group import run

        run(args)
        return
    obj, command, rest = plan
    try:
        text = command(obj, *rest)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        executor = sys.modules.get("nwguard.backends.nft.executor")
        if executor is not None:  # the kernel's cleanup after our exit, not before it
            executor.release_after_exit()
        if argv is None:
            _exit_now()
    except NwguardError as exc:
        _err(f"error: {exc}")
        sys.exit(exc.exit_status)
    except (EOFError, KeyboardInterrupt):
        _err("")
        _err("error: aborted")
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(1)


def _exit_now() -> None:
    """End the process with status 0 now, skipping the interpreter's teardown (freeing every
    module and object, the nftables context's cache: 7-11 ms of a create with 1000 ports
    bound). Nothing is lost: the output is flushed here, files are written whole and closed
    before the command returns, locks and sockets go with the process, nwguard registers no
    exit handlers."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def __getattr__(name: str) -> Any:
    """The click group's names (``main_group``, ``register``...), as this module had them."""
    if name.startswith("__"):
        raise AttributeError(name)
    from nwguard.cli import group

    return getattr(group, name)


if __name__ == "__main__":
    main()
