"""Plain XML documents without lxml (start-up is measured): expat builds the tree.

:func:`parse_document` is :func:`nwguard.xmlio.safe.parse_document` for the documents
nwguard writes itself: elements, attributes and text only, ASCII, every tag on one line. It
builds a tree of :class:`PlainElement` with expat, which has what the readers of
``filter_xml`` and ``binding_xml`` use of lxml's elements (``tag``, ``get``, ``attrib``,
``text``, ``sourceline``, ``find``, iteration over the children), so the same reader runs on either
tree and gives the same result and the same located error. Any other document (a declaration,
comment, CDATA, entity or character reference, namespace prefix, non-ASCII or control byte,
CR, a tag over several lines, one that expat refuses...), valid or not, goes to lxml, which
gives the answer and the error message; only the cost differs.

>>> root = plain_tree(b"<a x='1'>\\n  <b>t</b>\\n</a>\\n")
>>> root.tag, root.get("x"), [(c.tag, c.text, c.sourceline) for c in root]
('a', '1', [('b', 't', 2)])
>>> plain_tree(b"<a><!-- c --></a>") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast
from xml.parsers import expat

from nwguard.xmlio.common import Ctx

if TYPE_CHECKING:
    from lxml import etree

_MAX_BYTES = 1 << 18  # far above any filter or binding; beyond it safe's limits apply
_MAX_DEPTH = 8  # a filter is three deep; deeper trees, valid or not, go to lxml
_MAX_ELEMENTS = 10_000
_MAX_LINES = 60_000  # libxml2's line numbers are exact below 65535
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # a name expat and libxml2 read alike
# what plain documents lack: markup declarations, PIs, references, CR, control bytes, "]]>",
# and a newline inside a tag (libxml2 and expat would give such an element different lines)
_NOT_PLAIN = re.compile(rb"<[!?]|&|\]\]>|[\x00-\x08\x0b-\x1f\x7f-\xff]|<[^>]*\n")


class _NotPlain(Exception):
    pass


class PlainElement:
    """One element: what the readers use of ``lxml.etree._Element``."""

    __slots__ = ("_children", "_text", "attrib", "sourceline", "tag")

    def __init__(self, tag: str, attrib: dict[str, str], line: int) -> None:
        self.tag, self.attrib, self.sourceline = tag, attrib, line
        self._children: list[PlainElement] = []
        self._text: list[str] = []  # character data before the first child

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrib.get(key, default)

    @property
    def text(self) -> str | None:
        return "".join(self._text) or None  # lxml: None when there is none

    def find(self, tag: str) -> PlainElement | None:
        """The first child ``tag`` (lxml's ``find`` of a plain name)."""
        return next((c for c in self._children if c.tag == tag), None)

    def __iter__(self) -> Iterator[PlainElement]:
        return iter(self._children)

    def __len__(self) -> int:
        return len(self._children)


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def plain_tree(raw: bytes) -> PlainElement | None:
    """The tree of ``raw`` if it is a plain document, else None (lxml decides)."""
    if len(raw) > _MAX_BYTES or not raw.startswith(b"<") or _NOT_PLAIN.search(raw):
        return None
    if raw.count(b"\n") > _MAX_LINES:
        return None
    try:
        return _build(raw)
    except _NotPlain:
        return None


def _build(raw: bytes) -> PlainElement:
    stack: list[PlainElement] = []
    roots: list[PlainElement] = []
    p = expat.ParserCreate("UTF-8")
    count = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if len(stack) >= _MAX_DEPTH or count > _MAX_ELEMENTS or not _NAME.fullmatch(tag):
            raise _NotPlain
        for k, v in attrs.items():  # no namespaces; no '>' in values (the newline scan)
            if not _NAME.fullmatch(k) or k.startswith("xmlns") or ">" in v:
                raise _NotPlain
        el = PlainElement(tag, attrs, p.CurrentLineNumber)
        (stack[-1]._children if stack else roots).append(el)
        stack.append(el)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack and not stack[-1]._children:
            stack[-1]._text.append(data)

    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, text
    try:
        p.Parse(raw, True)
    except expat.ExpatError:
        raise _NotPlain from None
    return roots[0]


def parse_document(data: str | bytes, file: str | None, tag: str) -> tuple[Ctx, etree._Element]:
    """:func:`nwguard.xmlio.safe.parse_document`, with expat for a plain document."""
    # a long text is not encoded here: safe encodes it once (its memory bound)
    root = None if len(data) > _MAX_BYTES else plain_tree(_bytes(data))
    if root is None:
        from nwguard.xmlio.safe import parse_document as parse_lxml

        return parse_lxml(data, file, tag)
    ctx = Ctx(file)
    el = cast("etree._Element", root)  # duck-typed: the part of _Element the readers use
    if root.tag != tag:
        raise ctx.error(el, f"/{root.tag}", f"unknown root element <{root.tag}>; expected <{tag}>")
    return ctx, el
