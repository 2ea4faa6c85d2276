"""Many processes changing one configuration directory at once lose nothing and tear nothing."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

from nwguard.api import Client
from nwguard.state.filters import FilterStore
from nwguard.xmlio.filter_xml import parse_filter

PROCS, PER_PROC = 8, 25
SHARED_UUID = "5a5a5a5a-0000-4000-8000-000000000000"


def _worker(cfg: str, state: str, worker: int, start: mp.Event) -> None:  # type: ignore[valid-type]
    start.wait()
    c = Client.open(config_dir=cfg, state_dir=state)
    for i in range(PER_PROC):
        c.nwfilter_define(
            f"<filter name='w{worker}-f{i}'><rule action='drop' direction='out'>"
            f"<tcp dstportstart='{i}'/></rule><filterref filter='clean-traffic'/></filter>"
        )
        # everyone also rewrites one shared filter, and reads the whole directory
        c.nwfilter_define(
            f"<filter name='shared'><uuid>{SHARED_UUID}</uuid><rule action='drop' direction='out'>"
            f"<udp dstportstart='{worker * 100 + i}'/></rule></filter>"
        )
        assert len(c.nwfilter_list()) >= 24


def test_processes_defining_at_once_lose_nothing(tmp_path: Path):
    cfg, state = str(tmp_path / "etc"), str(tmp_path / "run")
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(cfg, state, w, start)) for w in range(PROCS)]
    for p in procs:
        p.start()
    start.set()  # all start on a fresh directory: the built-ins are installed exactly once
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCS

    d = tmp_path / "etc" / "nwfilter"
    files = sorted(p.name for p in d.iterdir())
    assert not [n for n in files if n.endswith(".tmp")], files
    filters = FilterStore(d).load()  # every file parses: nothing torn
    mine = {n for n in filters if n.startswith("w")}
    assert mine == {f"w{w}-f{i}" for w in range(PROCS) for i in range(PER_PROC)}
    assert len(filters) == 24 + PROCS * PER_PROC + 1
    assert filters["shared"].uuid == SHARED_UUID
    for name in mine:
        assert parse_filter((d / f"{name}.xml").read_bytes()).name == name


def test_cli_processes_at_once(tmp_path: Path):
    exe = Path(sys.executable).with_name("nwguard")
    env = {
        **os.environ,
        "NWGUARD_CONFIG_DIR": str(tmp_path / "etc"),
        "NWGUARD_STATE_DIR": str(tmp_path / "run"),
    }
    docs = []
    for i in range(8):
        p = tmp_path / f"c{i}.xml"
        p.write_text(f"<filter name='c{i}'><filterref filter='no-ip-spoofing'/></filter>")
        docs.append(p)
    procs = [
        subprocess.Popen(
            [exe, "nwfilter-define", str(p)], env=env, stdout=subprocess.PIPE, text=True
        )
        for p in docs
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(docs)
    assert sorted(outs) == sorted(f"Network filter c{i} defined from {docs[i]}\n" for i in range(8))
    names = {
        f.name
        for f in Client.open(env["NWGUARD_CONFIG_DIR"], env["NWGUARD_STATE_DIR"]).nwfilter_list()
    }
    assert {f"c{i}" for i in range(8)} <= names and len(names) == 32
