"""The CLI imports only the module of the command that runs, and the one-shot commands of an
orchestrator run without click (start-up is measured), printing what click's path prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from nwguard.cli import group
from nwguard.cli.main import COMMANDS, _fast_plan, main, main_group, register


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
    mods = sorted(m for m in sys.modules if m.startswith("nwguard.cli.") or m == "click")
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
    stdout, seen = _run(tmp_path, "nwfilter-list", "--json")
    assert seen["status"] == 0
    assert "clean-traffic" in stdout
    expected = ["click", *(f"nwguard.cli.{m}" for m in ("common", "connect", "group", "main"))]
    assert seen["cli"] == [*expected, "nwguard.cli.nwfilter"]


def test_the_fast_path_loads_no_click(tmp_path):
    stdout, seen = _run(tmp_path, "nwfilter-list")
    assert seen["status"] == 0
    assert "clean-traffic" in stdout
    assert seen["cli"] == ["nwguard.cli.common", "nwguard.cli.connect", "nwguard.cli.main"]


def test_unknown_command_and_help_still_see_every_command(tmp_path):
    _, seen = _run(tmp_path, "no-such-command")
    assert seen["status"] == 1
    assert "No such command 'no-such-command'" in str(seen["stderr"])
    assert set(seen["cli"]) >= {f"nwguard.cli.{m}" for m in COMMANDS.values()}
    result = CliRunner().invoke(main_group, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["nwfilter-list", "--json"],
        ["nwfilter-list", "extra"],
        ["--dry-run", "nwfilter-binding-delete", "vnet0"],
        ["nwfilter-binding-delete", "vnet0", "--dry-run"],
        ["nwfilter-binding-delete"],
        ["nwfilter-binding-delete", "--", "vnet0"],
        ["--config-dir"],
        ["--config-dir=", "nwfilter-list"],
        ["--version"],
        ["nwfilter-binding-list"],
    ],
)
def test_what_the_fast_path_leaves_to_click(args):
    assert _fast_plan(args) is None


def test_fast_path_options_as_click_reads_them(monkeypatch, tmp_path):
    monkeypatch.setenv("NWGUARD_STATE_DIR", "/from/env")
    monkeypatch.delenv("NWGUARD_CONFIG_DIR", raising=False)
    plan = _fast_plan(["--config-dir", "/a", "--config-dir=/b", "nwfilter-binding-delete", "p"])
    assert plan is not None
    obj, _, rest = plan
    assert (obj.config_dir, obj.state_dir, obj.dry_run, rest) == ("/b", "/from/env", False, ["p"])
    assert _fast_plan(["nwfilter-binding-create", str(tmp_path)]) is None  # a directory


def _both(capsys, args: list[str]) -> list[tuple[int, str, str]]:
    """(status, stdout, stderr) of ``args`` on the fast path, then through click."""
    out = []
    for runner in (main, group.run):
        capsys.readouterr()
        try:
            runner(args)
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        out.append((status, *capsys.readouterr()))
    return out


def test_fast_path_prints_what_click_prints(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NWGUARD_NO_DAEMON", "1")
    base = ["--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "run")]
    bad = tmp_path / "bad.xml"
    bad.write_text("<filterbinding><portdev name='vnet9'/></filterbinding>")
    cases = [
        ["nwfilter-list"],
        ["nwfilter-binding-delete", "vnet9"],
        ["nwfilter-binding-create", str(bad)],
    ]
    for args in cases:
        assert _fast_plan([*base, *args]) is not None
        fast, slow = _both(capsys, [*base, *args])
        assert fast == slow
    listed, unbound, invalid = (_both(capsys, [*base, *a])[0] for a in cases)
    assert listed[0] == 0 and " clean-traffic" in listed[1]
    assert unbound[0] != 0 and unbound[2].startswith("error: ") and "vnet9" in unbound[2]
    assert invalid[0] != 0 and invalid[2].startswith("error: ")
