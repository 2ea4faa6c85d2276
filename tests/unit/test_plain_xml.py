"""Issue 13, one-shot commands: filters and bindings read with expat (``xmlio.plain``) give
what lxml gives, results, lines and errors alike, and a create or a list loads no lxml."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lxml import etree

from nwguard.builtin import builtin_filters, builtin_xml
from nwguard.errors import XMLError
from nwguard.xmlio import plain
from nwguard.xmlio.binding_xml import parse_binding
from nwguard.xmlio.filter_xml import parse_filter, write_filter

from .test_oneshot_state import PROBE_PREAMBLE

SRC = Path(__file__).resolve().parents[2] / "src"
UUID = "d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53"
SHIPPED = [d.decode() for d in builtin_xml().values()]  # with comments: lxml reads them
WRITTEN = [write_filter(f) for f in builtin_filters().values()]


def _doc(body: str, head: str = "<filter name='f' chain='ipv4' priority='-700'>") -> str:
    return f"{head}\n  <uuid>{UUID}</uuid>\n{body}</filter>\n"


RULE = "  <rule action='accept' direction='inout' priority='100'>\n{}\n  </rule>\n"
GOOD = [
    _doc(RULE.format("    <tcp dstportstart='22' dstportend='$P' match='no'/>")),
    _doc(RULE.format("    <ip srcipaddr='$IP' protocol='udp' dstportstart='53'/>")),
    _doc(
        "  <filterref filter='clean-traffic'>\n    <parameter name='IP' value='10.0.0.1'/>\n"
        "  </filterref>\n  <rule action='drop' direction='out'/>\n"
    ),
    "<filter name='f'><rule action='drop' direction='in' statematch='false'><all/></rule></filter>",
    "<filter name='f'>\n\n\n  <uuid>\n  " + UUID + "\n  </uuid>\n</filter>",
]
# Plain documents, every one invalid: the expat tree gives the error.
BAD = [
    "<other name='f'/>",
    "<filter/>",
    "<filter name='a b'/>",
    "<filter name='f' chain='nope'/>",
    "<filter name='f' priority='x'/>",
    "<filter name='f' bogus='1'/>",
    _doc("  <uuid>" + UUID + "</uuid>\n"),
    _doc("  <bogus/>\n"),
    "<filter name='f'>\n  <uuid>nope</uuid>\n</filter>",
    _doc("  <rule direction='out'/>\n"),
    _doc("  <rule action='accept' direction='sideways'/>\n"),
    _doc(RULE.format("    <tcp dstportstart='99999'/>")),
    _doc(RULE.format("    <tcp bogus='1'/>")),
    _doc(RULE.format("    <tcp match='maybe'/>")),
    _doc(RULE.format("    <tcp srcportstart='1'/>\n    <udp srcportstart='2'/>")),
    _doc(RULE.format("    <tcp srcportstart='1'/>\n    <tcp srcportstart='2'/>")),
    _doc(RULE.format("    <tcp><x/></tcp>")),
    _doc(RULE.format("    <ip dstportstart='1'/>")),
    _doc(RULE.format("    <frobnicate/>")),
    _doc("  <filterref/>\n"),
    _doc("  <filterref filter='g'>\n    <parameter name='I P' value='1'/>\n  </filterref>\n"),
    _doc("  <filterref filter='g'>\n    <x/>\n  </filterref>\n"),
]
# Malformed or hostile: lxml gives the error.
MALFORMED = [
    "",
    "not xml",
    "<filter>",
    "<filter name='f'></filtre>",
    "<filter name='f'/><filter name='g'/>",
    "<filter name='f' name='g'/>",
    "<filter name='f'>" + "<a>" * 40 + "</a>" * 40 + "</filter>",
    "<x:filter xmlns:x='urn:x' name='f'/>",
    "<!DOCTYPE x [<!ENTITY a 'b'>]><filter name='f'/>",
]
# Not plain (lxml reads them, valid or not): the tree builder must refuse each.
ODD = [
    "<?xml version='1.0' encoding='UTF-8'?>" + GOOD[0],
    GOOD[0].replace("<uuid>", "<!-- c -->\n  <uuid>"),
    GOOD[0].replace("'22'", "'&#50;2'"),
    GOOD[0].replace("\n", "\r\n"),
    GOOD[0].replace("match='no'", "\n      match='no'"),  # a tag over two lines
    GOOD[0].replace("<tcp dstportstart='22' ", "<tcp dstportstart='22'\n"),
    GOOD[0].replace("<rule ", "<rule comment='a>b'\n "),
    GOOD[0].replace("name='f'", "name='f\u00e9'"),
    GOOD[0].replace("<uuid>", "<x:y xmlns:x='urn:x'/><uuid>"),
    " " + GOOD[0],
    "\ufeff" + GOOD[0],
    GOOD[0].replace("</filter>", "<![CDATA[x]]></filter>"),
    GOOD[0].replace("</filter>", "]]></filter>"),
    GOOD[0].replace("</filter>", "\x01</filter>"),
]


def _lxml_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plain, "plain_tree", lambda raw: None)


def _outcome(parse, doc: str):
    try:
        f = parse(doc, "f.xml", missing_uuid=lambda name: UUID)
    except XMLError as exc:
        return type(exc), str(exc), exc.line, exc.path, exc.attribute
    return f, [getattr(e, "line", None) for e in f.entries]  # lines: not part of equality


def _walk(el) -> tuple:
    """An element (lxml's or a plain one) as what the readers use of it, recursively."""
    kids = [_walk(c) for c in el if isinstance(c.tag, str)]
    return el.tag, list(el.attrib.items()), el.text, el.sourceline, kids


@pytest.mark.parametrize("doc", WRITTEN + GOOD)
def test_plain_trees_have_lxml_s_tags_attributes_text_and_lines(doc: str) -> None:
    root = plain.plain_tree(doc.encode())
    assert root is not None
    assert _walk(root) == _walk(etree.fromstring(doc.encode()))


@pytest.mark.parametrize("doc", SHIPPED + WRITTEN + GOOD + BAD + MALFORMED + ODD)
def test_parse_filter_answers_as_with_lxml(doc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _outcome(parse_filter, doc)
    _lxml_only(monkeypatch)
    assert fast == _outcome(parse_filter, doc)


@pytest.mark.parametrize("doc", BAD)
def test_errors_in_a_plain_document_come_from_the_expat_tree(doc: str) -> None:
    assert plain.plain_tree(doc.encode()) is not None


@pytest.mark.parametrize("doc", MALFORMED + ODD)
def test_anything_but_a_plain_document_goes_to_lxml(doc: str) -> None:
    assert plain.plain_tree(doc.encode()) is None


BINDINGS = [
    (
        f"<filterbinding>\n  <owner>\n    <name>vm</name>\n    <uuid>{UUID}</uuid>\n  </owner>\n"
        "  <portdev name='vnet0'/>\n  <mac address='52:54:00:7b:35:93'/>\n"
        "  <filterref filter='clean-traffic'>\n    <parameter name='IP' value='10.0.0.1'/>\n"
        "  </filterref>\n</filterbinding>\n"
    ),
    f"<filterbinding>\n  <owner>\n    <uuid>{UUID}</uuid>\n  </owner>\n</filterbinding>\n",
    "<filterbinding>\n  <owner><name>vm</name><uuid>x</uuid></owner>\n</filterbinding>",
    (
        f"<filterbinding><owner><name>vm</name><uuid>{UUID}</uuid></owner>\n<portdev name='a/b'/>"
        "</filterbinding>"
    ),
    "<filterbinding>\n<bogus/></filterbinding>",
]


@pytest.mark.parametrize("doc", BINDINGS)
def test_parse_binding_answers_as_with_lxml(doc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def outcome():
        try:
            return parse_binding(doc, "b.xml")
        except XMLError as exc:
            return type(exc), str(exc), exc.line, exc.path

    assert plain.plain_tree(doc.encode()) is not None
    fast = outcome()
    _lxml_only(monkeypatch)
    assert fast == outcome()


PROBE = PROBE_PREAMBLE + textwrap.dedent(
    """
    c = Client(ctx)
    names = [f.name for f in c.nwfilter_list()]
    listed = sorted(m for m in sys.modules if m.split(".")[0] == "lxml")
    c.nwfilter_binding_create(Path(sys.argv[2]).read_bytes(), sys.argv[2])
    print(json.dumps({
        "listed": listed,
        "created": sorted(m for m in sys.modules if m.split(".")[0] == "lxml"),
        "filters": len(names),
        "batches": len(ctx._engine.executor.batches),
    }))
    """
)


def test_a_list_and_a_create_load_no_lxml(tmp_path: Path) -> None:
    from nwguard.api import Client

    Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run")).nwfilter_list()
    (tmp_path / "b.xml").write_text(BINDINGS[0])
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), str(tmp_path / "b.xml")],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(out.stdout) == {"listed": [], "created": [], "filters": 24, "batches": 1}
