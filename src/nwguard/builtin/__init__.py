"""The 24 filters libvirt ships, with the UUIDs of libvirt's documentation.

Each ``<name>.xml`` next to this module is one filter in libvirt's format (with its
``<uuid>``). They are parsed once and cached; :class:`nwguard.store.FilterStore` installs them
into a fresh configuration directory.

>>> f = builtin_filters()["clean-traffic"]
>>> f.uuid
'db0b1767-d62b-269b-ea96-0cc8b451144e'
>>> [r.filter for r in f.refs][:2]
['no-mac-spoofing', 'no-ip-spoofing']
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from nwguard.model.filter import Filter
from nwguard.xmlio.filter_xml import parse_filter


@functools.cache
def builtin_xml() -> Mapping[str, bytes]:
    """The shipped XML documents by filter name (file name without ``.xml``), sorted by name."""
    files = resources.files(__name__)
    docs = {
        entry.name.removesuffix(".xml"): entry.read_bytes()
        for entry in files.iterdir()
        if entry.name.endswith(".xml")
    }
    return MappingProxyType(dict(sorted(docs.items())))


def builtin_filters() -> dict[str, Filter]:
    """The built-in filters by name, sorted by name, parsed and checked (cached; a fresh dict)."""
    return dict(_parsed())


@functools.cache
def _parsed() -> Mapping[str, Filter]:
    out: dict[str, Filter] = {}
    for name, data in builtin_xml().items():
        f = parse_filter(data, f"<builtin>/{name}.xml")
        if f.name != name:  # a packaging mistake, not a user error
            raise RuntimeError(f"built-in {name}.xml defines filter {f.name!r}")
        out[name] = f
    return MappingProxyType(out)


__all__ = ["builtin_filters", "builtin_xml"]
