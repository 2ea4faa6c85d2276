"""Parse untrusted XML safely and build located errors.

Refused before any parsing: documents over :data:`MAX_BYTES`, encodings that are not
ASCII-compatible (a UTF-16 document could hide its DOCTYPE from a byte scan), and any DOCTYPE
or ENTITY declaration (so entity expansion attacks never reach libxml2). After parsing: trees deeper than
:data:`MAX_DEPTH` or with more than :data:`MAX_ELEMENTS` elements.
"""

from __future__ import annotations

import re

from lxml import etree

from nwguard.errors import HostileXMLError, XMLError
from nwguard.xmlio.common import Ctx, line_of

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ELEMENTS = 50_000
_DECL_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ENCODING_RE = re.compile(rb"(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([^\"']*)[\"']")
_ASCII_COMPATIBLE = {b"utf-8", b"utf8", b"us-ascii", b"ascii", b"iso-8859-1", b"latin1", b"latin-1"}


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: str | bytes, file: str | None = None) -> etree._Element:
    """Parse ``data`` into an element tree, refusing hostile documents quickly."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise HostileXMLError(
            f"document is {len(raw)} bytes; at most {MAX_BYTES} are accepted", file=file
        )
    _check_encoding(raw, file)
    if _DECL_RE.search(raw):
        raise HostileXMLError("DOCTYPE and ENTITY declarations are not accepted", file=file)
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or None
        if "Excessive depth" in (exc.msg or ""):
            raise HostileXMLError(
                f"elements nested deeper than {MAX_DEPTH}", file=file, line=line
            ) from None
        raise XMLError(f"malformed XML: {exc.msg}", file=file, line=line) from None
    if root.getroottree().docinfo.internalDTD is not None:  # belt and braces
        raise HostileXMLError("DOCTYPE and ENTITY declarations are not accepted", file=file)
    _check_shape(root, file)
    return root


def parse_document(data: str | bytes, file: str | None, tag: str) -> tuple[Ctx, etree._Element]:
    """:func:`parse_xml`, refusing a root element other than ``<tag>``; with its :class:`Ctx`."""
    root = parse_xml(data, file)
    ctx = Ctx(file)
    if root.tag != tag:
        raise ctx.error(
            root, f"/{root.tag}", f"unknown root element <{root.tag}>; expected <{tag}>"
        )
    return ctx, root


def _check_encoding(raw: bytes, file: str | None) -> None:
    """Only ASCII-compatible encodings, so the DOCTYPE/ENTITY scan above sees every byte.

    A UTF-16 or UTF-32 document (or one declaring an exotic encoding) could otherwise hide
    ``<!DOCTYPE`` from a byte-level search.
    """
    body = raw.removeprefix(b"\xef\xbb\xbf").lstrip()
    if b"\x00" in raw or (body and not body.startswith(b"<")):  # UTF-16/32, EBCDIC, ...
        raise HostileXMLError("only UTF-8 documents are accepted", file=file)
    m = _ENCODING_RE.match(raw)
    if m and m.group(1).lower() not in _ASCII_COMPATIBLE:
        enc = m.group(1).decode("ascii", "replace")
        raise HostileXMLError(f"encoding '{enc}' is not accepted; use UTF-8", file=file)


def _check_shape(root: etree._Element, file: str | None) -> None:
    # XPath runs in libxml2: no Python loop over a (possibly huge) tree.
    count = root.xpath("count(//*)")
    if not isinstance(count, float) or count > MAX_ELEMENTS:  # fail closed
        raise HostileXMLError(f"more than {MAX_ELEMENTS} elements", file=file)
    too_deep = root.xpath("(/*" + "/*" * MAX_DEPTH + ")[1]")
    if not isinstance(too_deep, list) or too_deep:
        first = too_deep[0] if isinstance(too_deep, list) else None
        line = line_of(first) if isinstance(first, etree._Element) else None
        raise HostileXMLError(f"elements nested deeper than {MAX_DEPTH}", file=file, line=line)
