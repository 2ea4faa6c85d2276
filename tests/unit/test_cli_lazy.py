"""The CLI imports only the module of the command that runs (its start-up is measured)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from nwguard.cli.main import COMMANDS, main_group, register


def test_commands_table_is_what_the_modules_define():
    register()
    found = {name: cmd.callback.__module__ for name, cmd in main_group.commands.items()}
    assert found == {name: f"nwguard.cli.{module}" for name, module in COMMANDS.items()}


PROBE = textwrap.dedent(
    """
    import json, sys
    from nwguard.cli.main import main
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        status = exc.code
    else:
        status = 0
    mods = sorted(m for m in sys.modules if m.startswith("nwguard.cli."))
    print(json.dumps({"status": status, "cli": mods}), file=sys.stderr)
    """
)


def _run(tmp: Path, *args: str) -> tuple[str, dict[str, object]]:
    argv = [sys.executable, "-c", PROBE, "--config-dir", str(tmp / "etc")]
    argv += ["--state-dir", str(tmp / "run"), *args]
    env = {**os.environ, "NWGUARD_NO_DAEMON": "1"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    *errors, last = out.stderr.strip().splitlines()
    return out.stdout, {**json.loads(last), "stderr": "\n".join(errors)}


def test_a_command_imports_its_module_alone(tmp_path):
    stdout, seen = _run(tmp_path, "nwfilter-list")
    assert seen["status"] == 0
    assert "clean-traffic" in stdout
    assert seen["cli"] == [f"nwguard.cli.{m}" for m in ("common", "connect", "main", "nwfilter")]


def test_unknown_command_and_help_still_see_every_command(tmp_path):
    _, seen = _run(tmp_path, "no-such-command")
    assert seen["status"] == 1
    assert "No such command 'no-such-command'" in str(seen["stderr"])
    assert set(seen["cli"]) >= {f"nwguard.cli.{m}" for m in COMMANDS.values()}
    result = CliRunner().invoke(main_group, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
