"""Issue 13, one-shot commands: a process decodes only the applied state it touches, a delete
loads neither lxml nor the compiler, and the results are those of the whole read."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.compile.kernel_state import KernelState, diff, full
from nwguard.compile.program import PortCompiler
from nwguard.engine.ports import Engine, load_state, save_state
from nwguard.errors import XMLError
from nwguard.state.applied import PortParts
from nwguard.state.paths import Paths
from nwguard.xmlio import plain
from nwguard.xmlio.binding_xml import parse_binding, write_binding

SRC = Path(__file__).resolve().parents[2] / "src"


def _contrib(pc: PortCompiler, i: int, filt: str = "clean-traffic"):
    params = {"MAC": (f"52:54:00:00:00:{i:02x}",), "IP": (f"10.0.0.{i}",)}
    return pc.compile(f"vnet{i}", filt, params)


def _state(n: int) -> KernelState:
    pc = PortCompiler(builtin_filters())
    state = KernelState()
    for i in range(1, n + 1):
        state = state.with_port(f"vnet{i}", _contrib(pc, i))
    return state


def _parts(state: KernelState) -> dict:
    """What the applied state keeps of each port (a compiled one also has its slots)."""
    from nwguard.state.applied import PortFile

    return {p: PortFile.of(c) for p, c in state.ports.items()}


def _undecoded(ports: PortParts) -> set[str]:
    return {p for p in list(dict.keys(ports)) if ports.raw(p) is not None}


def test_a_loaded_state_decodes_only_the_port_a_change_touches(tmp_path: Path) -> None:
    state = _state(4)
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    assert isinstance(loaded.ports, PortParts)
    assert _undecoded(loaded.ports) == {"vnet1", "vnet2", "vnet3", "vnet4"}
    assert loaded.refs == state.refs and loaded.chains == state.chains
    new = loaded.with_port("vnet2", None)
    batch = diff(loaded, new, {"vnet2"})
    assert batch == diff(state, state.with_port("vnet2", None), {"vnet2"})
    assert _undecoded(loaded.ports) == {"vnet1", "vnet3", "vnet4"}  # vnet2 only was read
    assert _undecoded(new.ports) == {"vnet1", "vnet3", "vnet4"}
    assert _parts(loaded) == _parts(state) and full(loaded) == full(state)  # read whole


def test_a_journalled_state_loads_as_the_whole_read_does(tmp_path: Path) -> None:
    pc = PortCompiler(builtin_filters())
    state = _state(3)
    save_state(tmp_path, state)
    for change in (("vnet2", None), ("vnet5", _contrib(pc, 5)), ("vnet1", _contrib(pc, 7))):
        state = state.with_port(*change)
        save_state(tmp_path, state, {change[0]}, templates_changed=True)
    assert len(next(tmp_path.glob("ports.*.log")).read_text().splitlines()) == 3
    loaded = load_state(tmp_path)
    assert loaded.refs == state.refs and set(loaded.ports) == {"vnet1", "vnet3", "vnet5"}
    assert _parts(loaded) == _parts(state) and diff(loaded, state).commands == []


def test_a_snapshot_written_from_a_loaded_state_keeps_every_part(tmp_path: Path) -> None:
    state = _state(3)
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    save_state(tmp_path, loaded.with_port("vnet3", None))  # a whole save, undecoded parts copied
    again = load_state(tmp_path)
    assert _undecoded(again.ports) == {"vnet1", "vnet2"}
    assert _parts(again) == _parts(state.with_port("vnet3", None))
    assert json.loads((tmp_path / "ports.json").read_text())["refs"] == again.refs


def test_a_snapshot_of_version_1_is_read_whole_and_replaced(tmp_path: Path) -> None:
    from nwguard.state.applied import PortFile

    state = _state(2)
    save_state(tmp_path, state)
    ports = {p: PortFile.of(c).to_json() for p, c in state.ports.items()}
    v1 = {"version": 1, "log": "0123456789ab", "ports": ports}  # what the last version wrote
    (tmp_path / "ports.json").write_text(json.dumps(v1, separators=(",", ":")))
    loaded = load_state(tmp_path)
    assert not isinstance(loaded.ports, PortParts) and loaded.refs == state.refs
    assert _parts(loaded) == _parts(state) and diff(loaded, state).commands == []
    save_state(tmp_path, state.with_port("vnet2", None), {"vnet2"}, templates_changed=False)
    assert (tmp_path / "ports.json").read_text().startswith('{"version":2,')
    assert set(load_state(tmp_path).ports) == {"vnet1"}


def test_a_journal_that_names_chains_the_templates_lack_falls_back_to_the_whole_read(
    tmp_path: Path,
) -> None:
    # A writer killed between its journal line and templates.json: the port concerned is left
    # out, as the whole read always did; the others load.
    state = _state(2)
    save_state(tmp_path, state)
    token = json.loads((tmp_path / "ports.json").read_text())["log"]
    part = {"chains": ["c_missing"], "sets": [], "elements": {}, "dispatch": {}}
    line = json.dumps({"port": "vnet9", "part": part}, separators=(",", ":"))
    (tmp_path / f"ports.{token}.log").write_text(line + "\n")
    loaded = load_state(tmp_path)
    assert not isinstance(loaded.ports, PortParts)
    assert set(loaded.ports) == {"vnet1", "vnet2"} and loaded.refs == state.refs


class NoHost:
    def port_exists(self, name: str) -> bool:
        return True

    def ensure_bridge_netfilter(self, hooked: object = (), released: object = ()) -> None:
        pass


def test_hooked_reads_no_port_unless_a_chain_needs_the_ip_hooks(tmp_path: Path) -> None:
    from nwguard.xmlio.filter_xml import parse_filter

    stateful = parse_filter(
        "<filter name='stateful' chain='root'><filterref filter='clean-traffic'/><rule "
        "action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule></filter>"
    )
    pc = PortCompiler({**builtin_filters(), "stateful": stateful})
    paths = Paths(tmp_path / "etc", tmp_path / "run")
    eng = Engine(paths, executor=RecordingExecutor(), host=NoHost())
    save_state(tmp_path / "s", _state(3))
    loaded = load_state(tmp_path / "s")
    assert eng.hooked(loaded) == set() and len(_undecoded(loaded.ports)) == 3
    more = loaded.with_port("vnet8", _contrib(pc, 8, "stateful"))
    assert eng.hooked(more) == {"vnet8"}  # control: a conntrack chain is found


# ----------------------------------------------------------------------------- binding XML

UUID = "d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53"
GOOD = [
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev name='vnet0'/>"
        "<mac address='52:54:00:7b:35:93'/><filterref filter='clean-traffic'/></filterbinding>"
    ),
    (
        f"<filterbinding>\n  <owner>\n    <name>  vm 1 </name>\n    <uuid>{UUID.upper()}</uuid>\n"
        "  </owner>\n  <portdev name='vnet0'/>\n  <linkdev name='eth0'/>\n"
        "  <mac address='52:54:00:7B:35:93'/>\n  <filterref filter='clean-traffic'>\n"
        "    <parameter name='IP' value='10.0.0.1'/>\n    <parameter name='IP' value='10.0.0.2'/>\n"
        "    <parameter name='CTRL_IP_LEARNING' value='none'/>\n  </filterref>\n"
        "  <backend/>\n</filterbinding>\n"
    ),
    # the last of a repeated element counts; other children of <owner> are ignored
    (
        f"<filterbinding><owner><x/><name>vm</name><uuid>{UUID}</uuid></owner>"
        "<portdev name='a'/><portdev name='b'/><mac address='52:54:00:00:00:01'/>"
        "<filterref filter='f'/></filterbinding>"
    ),
]
BAD = [
    "",
    "not xml",
    "<filterbinding>",
    "<other/>",
    "<filterbinding><owner><name>vm</name></owner></filterbinding>",
    f"<filterbinding><owner><uuid>{UUID}</uuid></owner></filterbinding>",
    "<filterbinding><owner><name>vm</name><uuid>nope</uuid></owner></filterbinding>",
    f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev/></filterbinding>",
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev name='a/b'/>"
        "</filterbinding>"
    ),
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev name='v'/>"
        "<mac address='01:00:5e:00:00:01'/><filterref filter='f'/></filterbinding>"
    ),
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev name='v'/>"
        "<mac address='52:54:00:00:00:01'/><filterref filter='f'><parameter name='I P' value='1'/>"
        "</filterref></filterbinding>"
    ),
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev name='v'/>"
        "<mac address='52:54:00:00:00:01'/><filterref filter='f'><parameter name='IP' value='1'"
        " extra='x'/></filterref></filterbinding>"
    ),
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner><portdev name='v'/>"
        "<mac address='52:54:00:00:00:01'/><filterref filter='f'/><bogus/></filterbinding>"
    ),
    "<!DOCTYPE x [<!ENTITY a 'b'>]><filterbinding/>",
    "<x:filterbinding xmlns:x='urn:x'/>",
]
# Valid, but not plain: the whole parser reads them (same answer).
ODD = [
    GOOD[0].replace("<name>vm</name>", "<name>v&amp;m</name>"),
    "<?xml version='1.0' encoding='UTF-8'?>" + GOOD[0],
    GOOD[0].replace("<owner>", "<!-- c --><owner>"),
]


def _outcome(parse, doc: str):
    try:
        return parse(doc, "b.xml")
    except XMLError as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("doc", GOOD + BAD + ODD)
def test_the_engines_binding_reader_answers_as_lxml(doc: str, monkeypatch) -> None:
    """The engine reads stored bindings with ``parse_binding``: through ``xmlio.plain``'s
    expat tree for plain files, lxml for the rest; the answer is lxml's either way."""
    fast = _outcome(parse_binding, doc)
    monkeypatch.setattr(plain, "plain_tree", lambda raw: None)  # lxml only
    assert fast == _outcome(parse_binding, doc)


@pytest.mark.parametrize("doc", [*GOOD, *(write_binding(parse_binding(d)) for d in GOOD)])
def test_plain_bindings_and_what_nwguard_writes_take_the_expat_tree(doc: str) -> None:
    assert plain.plain_tree(doc.encode()) is not None


# A fresh interpreter with an embedded client over a recording executor (argv[1]: the
# config and state's parent); test_plain_xml's probe starts the same way.
PROBE_PREAMBLE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from nwguard.api import Client
    from nwguard.backends import RecordingExecutor
    from nwguard.engine.context import Context
    from nwguard.engine.ports import Engine
    from nwguard.state.paths import Paths

    class NoHost:
        def port_exists(self, name): return True
        def ensure_bridge_netfilter(self, hooked=(), released=()): pass

    paths = Paths(Path(sys.argv[1]) / "etc", Path(sys.argv[1]) / "run")
    ctx = Context(paths)
    ctx._engine = Engine(paths, executor=RecordingExecutor(), host=NoHost())
    """
)
PROBE = PROBE_PREAMBLE + textwrap.dedent(
    """
    before = set(sys.modules)
    Client(ctx).nwfilter_binding_delete("vnet1")
    heavy = ("lxml", "nwguard.compile.program", "nwguard.state.filters", "nwguard.xmlio.filter_xml")
    print(json.dumps({
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "lxml" or m in heavy),
        "gone": not (paths.binding_dir / "vnet1.xml").exists(),
        "batches": len(ctx._engine.executor.batches),
    }))
    """
)


def test_a_binding_delete_loads_neither_lxml_nor_the_compiler_nor_the_filter_store(
    tmp_path: Path,
) -> None:
    from nwguard.api import Client

    c = Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run"))
    c.ctx._engine = Engine(c.ctx.paths, executor=RecordingExecutor(), host=NoHost())
    for i in (1, 2):
        doc = GOOD[0].replace("vnet0", f"vnet{i}").replace(":93'", f":0{i}'")
        c.nwfilter_binding_create(doc)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(out.stdout) == {"loaded": [], "gone": True, "batches": 1}


def test_a_loaded_state_counts_the_ports_that_need_the_ip_layer(tmp_path: Path) -> None:
    """The snapshot's head and the journal carry ``ip_ports`` without decoding a port: a
    wrong count would delete the IP layer under a stateful port (or leave it for none)."""
    from nwguard.xmlio.filter_xml import parse_filter

    stateful = parse_filter(
        "<filter name='stateful' chain='root'><filterref filter='clean-traffic'/><rule "
        "action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule></filter>"
    )
    pc = PortCompiler({**builtin_filters(), "stateful": stateful})
    state = _state(2).with_port("vnet8", _contrib(pc, 8, "stateful"))
    assert state.ip_ports == 1
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    assert loaded.ip_ports == 1 and len(_undecoded(loaded.ports)) == 3
    steps = (
        ("vnet9", _contrib(pc, 9, "stateful")),
        ("vnet8", None),
        ("vnet1", _contrib(pc, 1, "stateful")),
    )
    for port, contrib in steps:
        state = state.with_port(port, contrib)
        save_state(tmp_path, state, {port}, templates_changed=True)
        loaded = load_state(tmp_path)
        assert isinstance(loaded.ports, PortParts) and loaded.ip_ports == state.ip_ports
    assert state.ip_ports == 2  # vnet9 and vnet1
    for port in ("vnet9", "vnet1"):
        state = state.with_port(port, None)
        save_state(tmp_path, state, {port}, templates_changed=True)
    loaded = load_state(tmp_path)
    assert loaded.ip_ports == state.ip_ports == 0 and not loaded.ip_layer


def test_a_damaged_binding_file_can_be_deleted(tmp_path: Path) -> None:
    """A delete checks only that the binding file is there (README): it neither parses it
    nor refuses it; a port without one is still refused."""
    from nwguard.errors import NotFoundError

    paths = Paths(tmp_path / "etc", tmp_path / "run")
    eng = Engine(paths, executor=RecordingExecutor(), host=NoHost())
    eng.bind(parse_binding(GOOD[0]), builtin_filters())
    f = paths.binding_dir / "vnet0.xml"
    f.write_text("<filterbinding><owner>torn")
    with pytest.raises(XMLError):
        eng.binding("vnet0")  # control: the file is unreadable
    eng.unbind("vnet0")
    assert not f.exists() and "vnet0" not in eng.applied().ports
    with pytest.raises(NotFoundError):
        eng.unbind("vnet0")
