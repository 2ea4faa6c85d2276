"""The nwfilter-* commands, driven through ``nwguard.cli.main`` in-process (and once as a process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nwguard.cli.main import main

SPAM = """<filter name='no-spamming' chain='root'>
  <uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>
  <rule action='drop' direction='out' priority='500'>
    <tcp dstportstart='25' dstportend='25'/>
  </rule>
</filter>
"""
COMMANDS = [
    "nwfilter-define",
    "nwfilter-undefine",
    "nwfilter-list",
    "nwfilter-dumpxml",
    "nwfilter-edit",
]


class Run:
    """``nwguard --config-dir … --state-dir … ARGS`` in this process: (status, stdout, stderr)."""

    def __init__(self, tmp: Path, capsys, monkeypatch) -> None:
        self.tmp, self.capsys, self.monkeypatch = tmp, capsys, monkeypatch
        self.base = ["--config-dir", str(tmp / "etc"), "--state-dir", str(tmp / "run")]

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        self.capsys.readouterr()
        try:
            main([*self.base, *args])
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        out, err = self.capsys.readouterr()
        return status, out, err


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    return Run(tmp_path, capsys, monkeypatch)


@pytest.fixture
def spam_file(tmp_path) -> Path:
    p = tmp_path / "spamming.xml"
    p.write_text(SPAM)
    return p


def assert_error(result: tuple[int, str, str], text: str) -> None:
    status, _out, err = result
    assert status == 1, result
    assert err.startswith("error: "), err
    assert text in err, err


# ----------------------------------------------------------------------------- define/list/dump/undefine


def test_define_list_dump_undefine(run, spam_file):
    status, out, err = run("nwfilter-define", str(spam_file))
    assert (status, err) == (0, "")
    assert out == f"Network filter no-spamming defined from {spam_file}\n"
    status, out, _ = run("nwfilter-list")
    assert " d217f2d7-5a04-0e01-8b98-ec2743436b74   no-spamming\n" in out
    status, out, _ = run("nwfilter-dumpxml", "no-spamming")
    assert out == SPAM
    assert run("nwfilter-dumpxml", "d217f2d7-5a04-0e01-8b98-ec2743436b74")[1] == SPAM
    assert run("nwfilter-undefine", "no-spamming") == (
        0,
        "Network filter no-spamming undefined\n",
        "",
    )
    assert "no-spamming" not in run("nwfilter-list")[1]


def test_define_from_stdin(run):
    assert run("nwfilter-define", "-", stdin=SPAM)[:2] == (
        0,
        "Network filter no-spamming defined from -\n",
    )


def test_list_on_a_fresh_directory_is_virshs_table_of_the_24(run):
    status, out, err = run("nwfilter-list")
    lines = out.splitlines()
    assert status == 0 and err == ""
    assert lines[0].startswith(" UUID   ") and lines[0].rstrip().endswith("Name")
    assert set(lines[1]) == {"-"}
    rows = lines[2:]
    assert len(rows) == 24
    name_col = lines[0].index("Name")
    for row in rows:
        uuid, name = row.split()
        assert row == f" {uuid}   {name}" and row.index(name) == name_col
    names = [r.split()[1] for r in rows]
    assert (
        names == sorted(names)
        and names[0] == "allow-arp"
        and names[-1] == "qemu-announce-self-rarp"
    )
    assert rows[9] == " db0b1767-d62b-269b-ea96-0cc8b451144e   clean-traffic"
    assert len(lines[1]) == (36 + 3) + (len("qemu-announce-self-rarp") + 3)  # virsh: widths + 3


def test_list_json(run):
    status, out, _ = run("nwfilter-list", "--json")
    data = json.loads(out)
    assert status == 0 and len(data) == 24
    assert data[0] == {"uuid": "15b1ab2b-b1ac-1be2-ed49-2042caba4abb", "name": "allow-arp"}
    assert [d["name"] for d in data] == sorted(d["name"] for d in data)


# ----------------------------------------------------------------------------- errors


def test_errors_are_one_line_with_status_1(run, tmp_path, spam_file):
    assert_error(run("nwfilter-define", str(tmp_path / "missing.xml")), "cannot read")
    bad = tmp_path / "bad.xml"
    bad.write_text("<filter name='x'>\n  <rule action='drop' direction='sideways'/>\n</filter>\n")
    result = run("nwfilter-define", str(bad))
    assert_error(
        result, f"{bad}:2 /filter[@name='x']/rule[1]/@direction: unknown direction 'sideways'"
    )
    assert result[2].count("\n") == 1
    assert_error(run("nwfilter-dumpxml", "nope"), "no filter with name or uuid 'nope'")
    assert_error(run("nwfilter-undefine", "nope"), "not found")
    assert_error(run("nwfilter-undefine", "no-arp-spoofing"), "is referenced by filter")
    run("nwfilter-define", str(spam_file))
    other = tmp_path / "other.xml"
    other.write_text(SPAM.replace("no-spamming", "other"))
    assert_error(
        run("nwfilter-define", str(other)),
        "filter with same UUID but different name ('no-spamming')",
    )
    # usage errors: one error line too (click's exit status 2 for usage, as cli.main keeps it)
    for result, text in (
        (run("nwfilter-list", "--bogus"), "No such option"),
        (run("nwfilter-dumpxml"), "Missing argument"),
    ):
        assert result[0] != 0 and result[2].startswith("error: ") and text in result[2]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_on_every_command(run, cmd):
    status, out, _ = run(cmd, "--help")
    assert status == 0 and out.startswith(f"Usage: nwguard {cmd}")


def test_commands_are_listed_in_main_help(run):
    out = run("--help")[1]
    for cmd in COMMANDS:
        assert cmd in out


def test_entry_point_as_a_process(tmp_path):
    exe = Path(sys.executable).with_name("nwguard")
    env = {
        **os.environ,
        "NWGUARD_CONFIG_DIR": str(tmp_path / "etc"),
        "NWGUARD_STATE_DIR": str(tmp_path / "run"),
    }
    ok = subprocess.run(
        [exe, "nwfilter-list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 24
    bad = subprocess.run(
        [exe, "nwfilter-dumpxml", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- edit

FAKE_EDITOR = textwrap.dedent(
    """
    import os, pathlib, sys
    d = pathlib.Path(os.environ["FAKE_EDITOR_DIR"])
    n = int((d / "count").read_text()) + 1 if (d / "count").exists() else 1
    (d / "count").write_text(str(n))
    target = pathlib.Path(sys.argv[1])
    (d / f"seen{n}.xml").write_text(target.read_text())
    if (d / f"round{n}.xml").exists():
        target.write_text((d / f"round{n}.xml").read_text())
    if (d / f"round{n}.rc").exists():
        sys.exit(int((d / f"round{n}.rc").read_text()))
    """
)


@pytest.fixture
def editor(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "editor"
    d.mkdir()
    script = d / "ed.py"
    script.write_text(FAKE_EDITOR)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    monkeypatch.setenv("FAKE_EDITOR_DIR", str(d))
    return d


def test_edit_unchanged(run, editor):
    assert run("nwfilter-edit", "allow-arp") == (
        0,
        "Network filter allow-arp XML configuration not changed.\n",
        "",
    )
    assert (editor / "seen1.xml").read_text() == run("nwfilter-dumpxml", "allow-arp")[1]


def test_edit_valid_change(run, editor):
    dump = run("nwfilter-dumpxml", "allow-arp")[1]
    (editor / "round1.xml").write_text(dump.replace("action='accept'", "action='drop'"))
    assert run("nwfilter-edit", "allow-arp") == (
        0,
        "Network filter allow-arp XML configuration edited.\n",
        "",
    )
    assert "action='drop'" in run("nwfilter-dumpxml", "allow-arp")[1]


def test_edit_invalid_then_again_then_valid(run, editor):
    dump = run("nwfilter-dumpxml", "allow-arp")[1]
    (editor / "round1.xml").write_text(dump.replace("action='accept'", "action='allow'"))
    (editor / "round2.xml").write_text(dump.replace("action='accept'", "action='reject'"))
    status, out, err = run("nwfilter-edit", "allow-arp", stdin="y\n")
    assert status == 0
    assert err.startswith(
        "error: line 3 /filter[@name='allow-arp']/rule[1]/@action: unknown action 'allow'"
    )
    assert "Try again? [y,n,i,f,?]" in out
    assert out.endswith("Network filter allow-arp XML configuration edited.\n")
    # the second round starts from the operator's edited (invalid) text, as in virsh
    assert "action='allow'" in (editor / "seen2.xml").read_text()
    assert "action='reject'" in run("nwfilter-dumpxml", "allow-arp")[1]


@pytest.mark.parametrize("answers", ["n\n", "", "?\nx\ni\nn\n"])
def test_edit_invalid_then_give_up_saves_nothing(run, editor, tmp_path, answers):
    run("nwfilter-list")
    before = {p.name: p.read_bytes() for p in (tmp_path / "etc" / "nwfilter").iterdir()}
    dump = run("nwfilter-dumpxml", "allow-arp")[1]
    (editor / "round1.xml").write_text(dump.replace("<rule", "<rule bogus='1'"))
    status, out, err = run("nwfilter-edit", "allow-arp", stdin=answers)
    assert status == 1
    assert err.startswith("error: ") and "unknown attribute 'bogus'" in err
    assert "edited" not in out
    if answers.startswith("?"):
        assert "y - yes, start editor again" in out and "answer y or n" in out
    after = {p.name: p.read_bytes() for p in (tmp_path / "etc" / "nwfilter").iterdir()}
    assert after == before
    assert int((editor / "count").read_text()) == 1


def test_edit_refuses_an_identity_clash(run, editor):
    dump = run("nwfilter-dumpxml", "allow-arp")[1]
    (editor / "round1.xml").write_text(dump.replace("name='allow-arp'", "name='allow-ipv4'"))
    status, _out, err = run("nwfilter-edit", "allow-arp", stdin="n\n")
    assert status == 1 and "already exists" in err


def test_edit_editor_failure(run, editor):
    (editor / "round1.rc").write_text("3")
    assert_error(run("nwfilter-edit", "allow-arp"), "exited with status 3; nothing saved")


def test_edit_missing_filter(run, editor):
    assert_error(run("nwfilter-edit", "nope"), "no filter with name or uuid 'nope'")
    assert not (editor / "count").exists()


def test_unusable_directories_are_errors_not_tracebacks(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run.base = ["--config-dir", str(blocker / "etc"), "--state-dir", str(tmp_path / "run")]
    assert_error(
        run("nwfilter-list"), f"{blocker / 'etc' / 'nwfilter'}: cannot create: Not a directory"
    )
    run.base = ["--config-dir", str(tmp_path / "etc"), "--state-dir", str(blocker / "run")]
    assert_error(run("nwfilter-list"), "cannot open the lock file")


def test_dry_run_saves_nothing(run, spam_file, tmp_path):
    run.base.append("--dry-run")
    assert run("nwfilter-define", str(spam_file))[0] == 0
    assert not (tmp_path / "etc").exists()
