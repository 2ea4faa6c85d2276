"""What every ``*_xml`` module shares: located errors, attribute and child checks, one writer.

Reading: a :class:`Ctx` builds :class:`~nwguard.errors.XMLError` for an element; the
``check_*`` helpers refuse what is not allowed. Writing: build a tree of :class:`Node` and
:func:`write_xml` it, in libvirt's style (two-space indent, single quotes, final newline).

>>> print(write_xml(Node("a", (("x", 1), ("on", True), ("y", None)), (Node("b", text="<t>"),))), end="")
<a x='1' on='yes'>
  <b>&lt;t&gt;</b>
</a>
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from nwguard.errors import XMLError
from nwguard.model.values import MAC, BadValue, is_multicast_mac
from nwguard.records import ValueRecord

if TYPE_CHECKING:  # the readers also take xmlio.plain's elements (lxml-free start-up)
    from lxml import etree

# ----------------------------------------------------------------------------- reading


def line_of(el: etree._Element) -> int | None:
    """The source line of ``el`` (lxml-stubs wrongly types ``sourceline`` as ``...``)."""
    return cast("int | None", el.sourceline)


def attributes(el: etree._Element) -> list[tuple[str, str]]:
    """``el``'s attributes in document order; lxml gives ``str`` (the stubs say or ``bytes``)."""
    return cast("list[tuple[str, str]]", el.attrib.items())


def children(el: etree._Element) -> list[etree._Element]:
    """Element children only (no comments or processing instructions)."""
    return [c for c in el if isinstance(c.tag, str)]


class Ctx:
    """Where we are in the document, to locate errors."""

    __slots__ = ("file",)

    def __init__(self, file: str | None) -> None:
        self.file = file

    def error(self, el: etree._Element, path: str, msg: str, attr: str | None = None) -> XMLError:
        return XMLError(msg, file=self.file, line=line_of(el), path=path, attribute=attr)


def check_attrs(ctx: Ctx, el: etree._Element, path: str, allowed: tuple[str, ...]) -> None:
    """Refuse an attribute of ``el`` not in ``allowed``."""
    for key, _ in attributes(el):
        if key not in allowed:
            raise ctx.error(
                el, path, f"unknown attribute '{key}'; allowed: {', '.join(allowed) or 'none'}", key
            )


def check_children(ctx: Ctx, el: etree._Element, path: str, allowed: tuple[str, ...]) -> None:
    """Refuse a child element of ``el`` whose tag is not in ``allowed``."""
    for child in children(el):
        if child.tag not in allowed:
            raise ctx.error(
                child,
                f"{path}/{child.tag}",
                f"unsupported element <{child.tag}>; allowed here: {', '.join(allowed) or 'none'}",
            )


def only(ctx: Ctx, el: etree._Element, path: str, tag: str) -> etree._Element | None:
    """The single child ``tag`` of ``el`` (None if absent; an error if repeated)."""
    found = [c for c in children(el) if c.tag == tag]
    if len(found) > 1:
        raise ctx.error(
            found[1], f"{path}/{tag}", f"<{tag}> given {len(found)} times; allowed once"
        )
    return found[0] if found else None


def check_element(
    ctx: Ctx, el: etree._Element, path: str, attrs: tuple[str, ...], kids: tuple[str, ...] = ()
) -> None:
    """Refuse attributes of ``el`` not in ``attrs`` and child elements not in ``kids``."""
    check_attrs(ctx, el, path, attrs)
    check_children(ctx, el, path, kids)


def only_checked(
    ctx: Ctx,
    parent: etree._Element,
    path: str,
    tag: str,
    attrs: tuple[str, ...],
    kids: tuple[str, ...] = (),
) -> tuple[etree._Element, str] | None:
    """The single child ``tag`` of ``parent`` and its path, checked by :func:`check_element`."""
    el = only(ctx, parent, path, tag)
    if el is None:
        return None
    check_element(ctx, el, f"{path}/{tag}", attrs, kids)
    return el, f"{path}/{tag}"


def guest_mac(ctx: Ctx, el: etree._Element, path: str, attr: str = "address") -> str:
    """The unicast MAC address in ``el``'s ``attr``, canonical (a missing one is invalid)."""
    text = el.get(attr, "")
    try:
        mac: str = MAC.parse(text)
    except BadValue as exc:
        raise ctx.error(el, path, f"illegal value '{text}'; expected {exc.allowed}", attr) from None
    return unicast(ctx, el, path, attr, mac)


def unicast(ctx: Ctx, el: etree._Element, path: str, attr: str, mac: str) -> str:
    """``mac`` if it is unicast: a guest or a bridge cannot own a group address."""
    if is_multicast_mac(mac):
        raise ctx.error(
            el, path, f"'{mac}' is a multicast MAC address; a unicast one is required", attr
        )
    return mac


# ----------------------------------------------------------------------------- writing


class Node(ValueRecord):
    """One element to write: attributes (``None`` values are left out), then children or text.

    ``True``/``False`` are written ``yes``/``no``, anything else as ``str()`` gives it.
    """

    tag: str
    attrs: tuple[tuple[str, object], ...] = ()
    children: tuple[Node, ...] = ()
    text: str | None = None

    def __init__(
        self,
        tag: str,
        attrs: tuple[tuple[str, object], ...] = (),
        children: tuple[Node, ...] = (),
        text: str | None = None,
    ) -> None:
        super().__init__(tag, attrs, children, text)  # typed, and Record's positional fast path


def write_xml(root: Node) -> str:
    """``root`` and its subtree as text, one element a line."""
    out: list[str] = []
    _render(root, "", out)
    return "\n".join(out) + "\n"


def _render(node: Node, pad: str, out: list[str]) -> None:
    attrs = "".join(f" {k}={quote(_fmt(v))}" for k, v in node.attrs if v is not None)
    if node.text is not None:
        out.append(f"{pad}<{node.tag}{attrs}>{text_escape(node.text)}</{node.tag}>")
    elif not node.children:
        out.append(f"{pad}<{node.tag}{attrs}/>")
    else:
        out.append(f"{pad}<{node.tag}{attrs}>")
        for child in node.children:
            _render(child, pad + "  ", out)
        out.append(f"{pad}</{node.tag}>")


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def quote(value: str) -> str:
    """An attribute value in libvirt's style: single quotes, XML-escaped."""
    esc = (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")
    )
    # A parser normalises literal tab/newline/CR in attributes to spaces: escape them.
    esc = esc.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")
    return f"'{esc}'"


def text_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
