"""FilterStore and the filter service: identity rules, loops, references, built-ins, nothing changed on failure."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest

from nwguard.api import Client
from nwguard.errors import (
    ConflictError,
    InUseError,
    LoopError,
    NotFoundError,
    NwguardError,
    XMLError,
)
from nwguard.state.filters import MARKER, FilterStore

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


def fxml(name: str, *refs: str, uuid: str | None = None, port: int = 25) -> str:
    body = f"<uuid>{uuid}</uuid>" if uuid else ""
    body += f"<rule action='drop' direction='out'><tcp dstportstart='{port}'/></rule>"
    body += "".join(f"<filterref filter='{r}'/>" for r in refs)
    return f"<filter name='{name}'>{body}</filter>"


@pytest.fixture
def client(tmp_path: Path):
    return Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run"))


@pytest.fixture
def fdir(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "nwfilter"


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


# ----------------------------------------------------------------------------- identity


def test_define_new_and_update_same_uuid(client, fdir):
    f = client.nwfilter_define(fxml("a", uuid=U1)).filter
    assert f.uuid == U1
    assert (fdir / "a.xml").read_text().startswith("<filter name='a' chain='root'>\n  <uuid>" + U1)
    g = client.nwfilter_define(fxml("a", uuid=U1, port=26)).filter
    assert g.uuid == U1 and "dstportstart='26'" in client.nwfilter_dumpxml("a")


def test_same_uuid_other_name_refused(client):
    client.nwfilter_define(fxml("a", uuid=U1))
    with pytest.raises(
        ConflictError, match=r"filter with same UUID but different name \('a'\) already exists"
    ):
        client.nwfilter_define(fxml("b", uuid=U1))


def test_builtin_uuid_under_another_name_refused(client):
    with pytest.raises(ConflictError, match=r"different name \('clean-traffic'\)"):
        client.nwfilter_define(fxml("mine", uuid="db0b1767-d62b-269b-ea96-0cc8b451144e"))


def test_same_name_other_uuid_refused(client):
    client.nwfilter_define(fxml("a", uuid=U1))
    with pytest.raises(ConflictError, match=f"filter 'a' already exists with uuid {U1}"):
        client.nwfilter_define(fxml("a", uuid=U2))


def test_without_uuid_an_existing_filter_keeps_its_uuid(client):
    client.nwfilter_define(fxml("a", uuid=U1))
    f = client.nwfilter_define(fxml("a", port=80)).filter
    assert f.uuid == U1
    assert "dstportstart='80'" in client.nwfilter_dumpxml(U1)
    # a builtin redefined from a uuid-less file keeps its documented uuid
    g = client.nwfilter_define(
        "<filter name='allow-arp' chain='arp'><rule action='drop' direction='inout'/></filter>"
    ).filter
    assert g.uuid == "15b1ab2b-b1ac-1be2-ed49-2042caba4abb"


def test_without_uuid_a_new_filter_gets_a_random_one(client):
    a = client.nwfilter_define(fxml("a")).filter
    b = client.nwfilter_define(fxml("b")).filter
    assert a.uuid != b.uuid
    assert uuidlib.UUID(a.uuid).version == 4


def test_lookup_by_name_or_uuid(client):
    client.nwfilter_define(fxml("a", uuid=U1))
    assert client.nwfilter_get("a").uuid == U1
    assert client.nwfilter_get(U1).name == "a"
    assert client.nwfilter_get(U1.upper()).name == "a"
    with pytest.raises(NotFoundError, match="no filter with name or uuid 'nope'"):
        client.nwfilter_get("nope")
    with pytest.raises(NotFoundError):
        client.nwfilter_dumpxml(U2)


def test_list_is_sorted_by_name(client):
    for n in ("zz", "aa", "mm"):
        client.nwfilter_define(fxml(n))
    names = [f.name for f in client.nwfilter_list()]
    assert names == sorted(names) and {"aa", "mm", "zz"} <= set(names) and len(names) == 27


# ----------------------------------------------------------------------------- loops


def test_self_reference_refused(client, fdir):
    with pytest.raises(LoopError, match=r"^filter would introduce a loop: a -> a$"):
        client.nwfilter_define(fxml("a", "a"))
    assert not (fdir / "a.xml").exists()


def test_two_cycle_refused(client):
    client.nwfilter_define(fxml("b", "a"))  # a does not exist yet: allowed
    with pytest.raises(LoopError, match=r"^filter would introduce a loop: a -> b -> a$"):
        client.nwfilter_define(fxml("a", "b"))


def test_three_cycle_refused_with_its_path(client):
    client.nwfilter_define(fxml("b", "c"))
    client.nwfilter_define(fxml("c", "x", "a"))
    client.nwfilter_define(fxml("a"))
    with pytest.raises(LoopError) as info:
        client.nwfilter_define(fxml("a", "clean-traffic", "b"))
    assert str(info.value) == "filter would introduce a loop: a -> b -> c -> a"


def test_loop_through_redefinition_of_a_middle_filter(client):
    client.nwfilter_define(fxml("a", "b"))
    client.nwfilter_define(fxml("b"))
    with pytest.raises(LoopError, match="b -> a -> b"):
        client.nwfilter_define(fxml("b", "a"))


def test_diamond_is_not_a_loop(client):
    client.nwfilter_define(fxml("d"))
    client.nwfilter_define(fxml("b", "d"))
    client.nwfilter_define(fxml("c", "d"))
    client.nwfilter_define(fxml("a", "b", "c", "d", "b"))


def test_references_to_missing_filters_are_allowed(client):
    f = client.nwfilter_define(fxml("a", "does-not-exist")).filter
    assert f.refs[0].filter == "does-not-exist"


# ----------------------------------------------------------------------------- undefine


def test_undefine_refused_while_referenced(client, fdir):
    client.nwfilter_define(fxml("b"))
    client.nwfilter_define(fxml("a", "b"))
    with pytest.raises(InUseError, match=r"^filter 'b' is referenced by filter 'a'$"):
        client.nwfilter_undefine("b")
    assert (fdir / "b.xml").exists()
    client.nwfilter_undefine("a")
    assert client.nwfilter_undefine("b").filter.name == "b"
    assert not (fdir / "b.xml").exists()


def test_undefine_builtin_refused_while_referenced(client):
    with pytest.raises(
        InUseError, match="referenced by filters 'clean-traffic', 'clean-traffic-gateway'"
    ):
        client.nwfilter_undefine("no-mac-spoofing")


def test_undefine_by_uuid_and_missing(client):
    client.nwfilter_define(fxml("a", uuid=U1))
    assert client.nwfilter_undefine(U1).filter.name == "a"
    with pytest.raises(NotFoundError):
        client.nwfilter_undefine("a")


# ----------------------------------------------------------------------------- nothing changes on failure

FAILURES = [
    ("xml", "<filter name='a'><rule action='drop'/></filter>", XMLError),
    (
        "value",
        "<filter name='a'><rule action='drop' direction='out'><tcp dstportstart='x'/></rule></filter>",
        XMLError,
    ),
    ("hostile", "<!DOCTYPE x [<!ENTITY a 'b'>]><filter name='a'/>", XMLError),
    ("uuid-name", fxml("b", uuid=U1), ConflictError),
    ("name-uuid", fxml("a", uuid=U2), ConflictError),
    ("loop", fxml("a", "c"), LoopError),
]


@pytest.mark.parametrize(("doc", "exc"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failed_define_changes_nothing_on_disk(client, fdir, doc, exc):
    client.nwfilter_define(fxml("a", uuid=U1, port=1))
    client.nwfilter_define(fxml("c", "a"))
    before = snapshot(fdir)
    with pytest.raises(exc):
        client.nwfilter_define(doc, file="x.xml")
    assert snapshot(fdir) == before


# ----------------------------------------------------------------------------- the engine's hook


class Recorder:
    def __init__(self, veto: Exception | None = None) -> None:
        self.calls: list[dict] = []
        self.veto = veto

    def __call__(self, new_map):
        self.calls.append(dict(new_map))
        if self.veto:
            raise self.veto


def test_hook_sees_the_complete_new_map_before_saving(client, fdir):
    rec = Recorder()
    client._filters.before_save = rec
    client.nwfilter_define(fxml("a", uuid=U1))
    (m,) = rec.calls
    assert m["a"].uuid == U1 and "clean-traffic" in m and len(m) == 25
    # an unchanged redefinition does not rebuild anything
    client.nwfilter_define(fxml("a", uuid=U1))
    assert len(rec.calls) == 1
    client.nwfilter_undefine("a")
    assert "a" not in rec.calls[-1] and len(rec.calls[-1]) == 24


def test_hook_veto_saves_nothing(client, fdir):
    client.nwfilter_define(fxml("a", uuid=U1, port=1))
    before = snapshot(fdir)
    client._filters.before_save = Recorder(InUseError("filter 'a' is in use by port vnet0"))
    with pytest.raises(InUseError, match="vnet0"):
        client.nwfilter_define(fxml("a", uuid=U1, port=2))
    with pytest.raises(InUseError):
        client.nwfilter_undefine("a")
    assert snapshot(fdir) == before


def test_hook_may_call_back_into_the_client_under_the_lock(client):
    seen = []
    client._filters.before_save = lambda m: seen.append(len(client.nwfilter_list()))
    client.nwfilter_define(fxml("a"))
    assert seen == [24]  # the stored state, before the change


def test_dry_run_checks_and_saves_nothing(tmp_path):
    c = Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run"), dry_run=True)
    rec = Recorder()
    c._filters.before_save = rec
    f = c.nwfilter_define(fxml("a")).filter
    assert f.name == "a" and len(rec.calls) == 1 and "clean-traffic" in rec.calls[0]
    assert len(c.nwfilter_list()) == 24  # the built-ins, shown but not written
    assert not (tmp_path / "etc" / "nwfilter").exists()
    with pytest.raises(LoopError):
        c.nwfilter_define(fxml("b", "b"))


# ----------------------------------------------------------------------------- built-ins


def test_builtins_installed_once_and_not_resurrected(client, fdir):
    assert len(client.nwfilter_list()) == 24
    assert (fdir / MARKER).exists()
    client.nwfilter_undefine("allow-arp")
    assert "allow-arp" not in [f.name for f in client.nwfilter_list()]
    # a fresh client (another process) does not bring it back either
    again = Client.open(config_dir=str(fdir.parent), state_dir=str(fdir.parent.parent / "run"))
    assert "allow-arp" not in [f.name for f in again.nwfilter_list()]
    # removing the marker reinstalls what is missing
    (fdir / MARKER).unlink()
    assert "allow-arp" in [f.name for f in again.nwfilter_list()]


def test_builtins_never_overwrite_an_operators_filter(tmp_path):
    d = tmp_path / "nwfilter"
    d.mkdir()
    mine = "<filter name='clean-traffic'><uuid>" + U1 + "</uuid></filter>"
    (d / "clean-traffic.xml").write_text(mine)
    (d / "other.xml").write_text(
        "<filter name='other'><uuid>fb57c546-76dc-a372-513f-e8179011b48a</uuid></filter>"
    )
    store = FilterStore(d)
    installed = store.setup()
    assert "clean-traffic" not in installed and "no-mac-spoofing" not in installed  # uuid taken
    assert len(installed) == 22
    assert (d / "clean-traffic.xml").read_text() == mine
    assert store.load()["clean-traffic"].uuid == U1


# ----------------------------------------------------------------------------- loading hand-made files


def test_file_name_must_match_filter_name(tmp_path):
    d = tmp_path / "nwfilter"
    d.mkdir()
    (d / "a.xml").write_text("<filter name='b'/>")
    with pytest.raises(
        NwguardError, match=r"a\.xml: file defines filter 'b'; its file name must be 'b\.xml'"
    ):
        FilterStore(d).load()


def test_bad_file_error_names_the_file(tmp_path):
    d = tmp_path / "nwfilter"
    d.mkdir()
    (d / "a.xml").write_text("<filter name='a'>\n<rule action='nope' direction='out'/></filter>")
    with pytest.raises(XMLError) as info:
        FilterStore(d).load()
    assert str(info.value).startswith(f"{d / 'a.xml'}:2 ")


def test_duplicate_uuid_files_refused(tmp_path):
    d = tmp_path / "nwfilter"
    d.mkdir()
    (d / "a.xml").write_text(f"<filter name='a'><uuid>{U1}</uuid></filter>")
    (d / "b.xml").write_text(f"<filter name='b'><uuid>{U1}</uuid></filter>")
    with pytest.raises(ConflictError, match=r"b\.xml: filter has the same uuid .* as .*a\.xml"):
        FilterStore(d).load()


def test_uuidless_file_gets_a_stable_uuid_written_back_only_when_asked(tmp_path):
    d = tmp_path / "nwfilter"
    d.mkdir()
    (d / "a.xml").write_text("<filter name='a'/>")
    s = FilterStore(d)
    u = s.load()["a"].uuid
    assert s.load()["a"].uuid == u
    assert "<uuid>" not in (d / "a.xml").read_text()
    s.load(write_back=True)
    assert f"<uuid>{u}</uuid>" in (d / "a.xml").read_text()


def test_temp_and_other_files_ignored(tmp_path):
    d = tmp_path / "nwfilter"
    d.mkdir()
    (d / ".a.xml.123.tmp").write_text("garbage")
    (d / ".hidden.xml").write_text("garbage")
    (d / "README").write_text("garbage")
    (d / "a.xml").write_text("<filter name='a'/>")
    assert list(FilterStore(d).load()) == ["a"]
    assert FilterStore(tmp_path / "missing").load() == {}
