"""Binding XML without lxml, for the documents nwguard writes itself (start-up is measured).

:func:`read_binding` parses plain documents (elements and attributes only: no declaration,
comment, CDATA, entity or character reference, namespace prefix, nor anything the binding
does not have) with expat, applying every check of
:func:`nwguard.xmlio.binding_xml.parse_binding`; a document it does not take whole, valid or
not, goes to ``parse_binding``, which gives the same binding or the located error. So the
answer and every error message are those of ``parse_binding``; only the cost differs.

>>> read_binding("<filterbinding><owner><name>vm</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-"
...     "8f0e5b8e2a53</uuid></owner><portdev name='vnet0'/><mac address='52:54:00:7b:35:93'/>"
...     "<filterref filter='clean-traffic'/></filterbinding>").portdev
'vnet0'
"""

from __future__ import annotations

import re
from xml.parsers import expat

from nwguard.model.binding import FilterBinding
from nwguard.model.filter import FilterRef, make_params
from nwguard.model.names import FILTER_NAME, IFNAME, UUID
from nwguard.model.values import MAC, VAR_NAME_RE, VAR_VALUE_RE, BadValue, is_multicast_mac

_CHILDREN = {"owner", "portdev", "linkdev", "mac", "filterref", "backend"}
_MAX_BYTES = 1 << 16  # far above any binding; beyond it the whole parser's limits apply
_MAX_PARAMETERS = 1000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # a name expat and libxml2 read alike


class _Plain(Exception):
    """Not a document this parser takes: ``parse_binding`` decides."""


class _El:
    __slots__ = ("attrs", "children", "tag", "text")

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[_El] = []
        self.text: list[str] = []  # text before the first child (lxml's ``text``)


def read_binding(data: str | bytes, file: str | None = None) -> FilterBinding:
    """The binding in ``data``, as :func:`~nwguard.xmlio.binding_xml.parse_binding` reads it."""
    try:
        return _plain(data.encode() if isinstance(data, str) else data)
    except _Plain:
        from nwguard.xmlio.binding_xml import parse_binding

        return parse_binding(data, file)


def _tree(raw: bytes) -> _El:
    if len(raw) > _MAX_BYTES or not raw.startswith(b"<") or b"<!" in raw or b"<?" in raw:
        raise _Plain
    if b"&" in raw:  # entity and character references
        raise _Plain
    stack: list[_El] = []
    root: list[_El] = []
    count = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if not _NAME.fullmatch(tag) or any(
            not _NAME.fullmatch(a) or a.startswith("xmlns") for a in attrs
        ):
            raise _Plain  # no namespaces
        if len(stack) >= 3 or count > _MAX_PARAMETERS + 16:
            raise _Plain  # a binding is three levels deep
        el = _El(tag, attrs)
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        stack.append(el)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack and not stack[-1].children:
            stack[-1].text.append(data)

    p = expat.ParserCreate("UTF-8")
    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, text
    try:
        p.Parse(raw, True)
    except expat.ExpatError:
        raise _Plain from None
    return root[0]


def _plain(raw: bytes) -> FilterBinding:
    root = _tree(raw)
    if root.tag != "filterbinding":
        raise _Plain
    found: dict[str, _El] = {}
    for el in root.children:
        if el.tag not in _CHILDREN:
            raise _Plain
        found[el.tag] = el  # the last one counts, as in parse_binding
    owner = found.get("owner")
    if owner is None:
        raise _Plain
    name_el = next((c for c in owner.children if c.tag == "name"), None)
    uuid_el = next((c for c in owner.children if c.tag == "uuid"), None)
    if name_el is None or uuid_el is None or name_el.children or uuid_el.children:
        raise _Plain
    name = "".join(name_el.text).strip()
    try:
        uuid: str = UUID.parse("".join(uuid_el.text))
        mac_el = found["mac"]
        mac: str = MAC.parse(mac_el.attrs["address"])
    except (BadValue, KeyError):
        raise _Plain from None
    if not name or is_multicast_mac(mac):
        raise _Plain
    portdev = _ifname(found.get("portdev"))
    linkdev = _ifname(found["linkdev"]) if "linkdev" in found else None
    ref_el = found.get("filterref")
    target = ref_el.attrs.get("filter") if ref_el is not None else None
    if ref_el is None or target is None or not FILTER_NAME.accepts(target):
        raise _Plain
    pairs = []
    for p in ref_el.children:
        pname, value = p.attrs.get("name"), p.attrs.get("value")
        if p.tag != "parameter" or p.attrs.keys() - {"name", "value"}:
            raise _Plain
        if pname is None or value is None:
            raise _Plain
        if not (VAR_NAME_RE.fullmatch(pname) and VAR_VALUE_RE.fullmatch(value)):
            raise _Plain
        pairs.append((pname, value))
    ref = FilterRef(target, make_params(pairs))
    return FilterBinding(name, uuid, portdev, mac, ref, linkdev)


def _ifname(el: _El | None) -> str:
    name = el.attrs.get("name") if el is not None else None
    if name is None or not IFNAME.accepts(name):
        raise _Plain
    return name
