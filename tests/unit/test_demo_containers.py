"""The demo's container part without podman: one line saying why, no rows (no root needed)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from nwguard_demo import containers


def test_without_podman_the_container_part_is_one_note(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(containers.shutil, "which", lambda name: None)
    out = io.StringIO()
    console = Console(file=out, width=200)
    rows = containers.container_demo(console, None, None, tmp_path)  # type: ignore[arg-type]
    assert rows == []
    lines = out.getvalue().splitlines()
    assert lines[1:] == ["skipped: podman is not installed (scripts/install.sh installs it)"]
    assert "Containers: podman" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing made
