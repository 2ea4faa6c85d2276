"""Issue 13: a one-shot command run as the program ends without the interpreter's teardown
once its output is written (7-11 ms of a create), and loses nothing of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nwguard.api import Client

SRC = Path(__file__).resolve().parents[2] / "src"
# an exit handler shows whether the interpreter's teardown ran
PROG = (
    "import atexit; atexit.register(print, 'teardown'); from nwguard.cli.main import main; main()"
)


def _run(tmp: Path, *args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", PROG, "--config-dir", str(tmp / "etc")]
    argv += ["--state-dir", str(tmp / "run"), *args]
    env = {**os.environ, "NWGUARD_NO_DAEMON": "1", "PYTHONPATH": str(SRC)}
    pipes = {"stdout": stdout, "stderr": subprocess.PIPE}
    return subprocess.run(argv, **pipes, text=True, env=env, check=False)


def test_a_listed_table_is_whole_and_no_teardown_runs(tmp_path: Path) -> None:
    c = Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run"))
    from nwguard.cli.main import filter_table

    expected = filter_table(c) + "\n"
    out_file = tmp_path / "out.txt"
    with open(out_file, "w") as f:  # a file, not a terminal: stdout is block-buffered
        done = _run(tmp_path, "nwfilter-list", stdout=f)
    assert (done.returncode, done.stderr) == (0, "")
    assert out_file.read_text() == expected  # 24 filters, every line, no 'teardown'


def test_an_error_exits_as_before_with_the_teardown(tmp_path: Path) -> None:
    done = _run(tmp_path, "nwfilter-binding-delete", "vnet9")
    assert done.returncode != 0
    assert done.stderr == "error: no filter binding for port 'vnet9'\n"
    assert done.stdout == "teardown\n"


def test_the_click_path_keeps_its_teardown(tmp_path: Path) -> None:
    done = _run(tmp_path, "nwfilter-list", "--json")
    assert done.returncode == 0
    assert done.stdout.endswith("teardown\n") and "clean-traffic" in done.stdout
