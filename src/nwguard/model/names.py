"""The names and identifiers nwguard accepts: one definition each, used by every layer.

Each is a :class:`~nwguard.model.values.ValueType`: ``parse`` returns the canonical form or
raises :class:`~nwguard.model.values.BadValue` saying what is allowed.

>>> IFNAME.parse("vnet0"), UUID.parse("D2B2F9B694FF4AA7B4B08F0E5B8E2A53")
('vnet0', 'd2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53')
>>> IFNAME.parse("..")
Traceback (most recent call last):
...
nwguard.model.values.BadValue: 1 to 15 characters (at most 15 bytes in UTF-8) without '/', ':' or whitespace, not '.' or '..'
"""

from __future__ import annotations

import re

from nwguard.model.values import BadValue, ValueType

# ----------------------------------------------------------------------------- interfaces

IFNAME_MAX_BYTES = 15  # IFNAMSIZ - 1
IFNAME_ALLOWED = (
    "1 to 15 characters (at most 15 bytes in UTF-8) without '/', ':' or whitespace, not '.' or '..'"
)
# The kernel's dev_valid_name(): it tests bytes with its Latin-1 isspace(), so 0xa0 counts too.
_IFNAME_BAD_BYTES = re.compile(rb"[/:\x00 \t\n\v\f\r\xa0]")


def _parse_ifname(text: str) -> str:
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no device can be called that
        raise BadValue(IFNAME_ALLOWED) from None
    if (
        not 1 <= len(raw) <= IFNAME_MAX_BYTES
        or raw in (b".", b"..")
        or _IFNAME_BAD_BYTES.search(raw)
    ):
        raise BadValue(IFNAME_ALLOWED)
    return text


IFNAME = ValueType("IFNAME", _parse_ifname, str, IFNAME_ALLOWED)
"""A network device name (ports, bridges, forward devices) as the Linux kernel accepts it."""

# ----------------------------------------------------------------------------- filters, networks


def _pattern_type(name: str, pattern: str, allowed: str) -> ValueType:
    compiled = re.compile(pattern)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise BadValue(allowed)
        return text

    return ValueType(name, parse, str, allowed)


FILTER_NAME = _pattern_type(
    "FILTER_NAME",
    r"[A-Za-z_][A-Za-z0-9_.-]{0,127}",
    "1 to 128 characters of A-Z a-z 0-9 _ . -, starting with a letter or _",
)
NETWORK_NAME = _pattern_type(
    "NETWORK_NAME",
    r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}",
    "1 to 64 characters of A-Z a-z 0-9 _ . + -, starting with a letter or digit",
)

# ----------------------------------------------------------------------------- uuids

# libvirt's virUUIDParse: 32 hex digits in pairs, '-' or ' ' allowed between pairs, ASCII
# whitespace around. No braces and no 'urn:uuid:' (Python's uuid.UUID takes both).
_UUID_RE = re.compile(r"[ \t\n\v\f\r]*((?:[- ]*[0-9A-Fa-f]{2}){16})[ \t\n\v\f\r]*")
UUID_ALLOWED = "32 hex digits, e.g. d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53"


def _parse_uuid(text: str) -> str:
    m = _UUID_RE.fullmatch(text)
    if not m:
        raise BadValue(UUID_ALLOWED)
    h = m.group(1).replace("-", "").replace(" ", "").lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


UUID = ValueType("UUID", _parse_uuid, str, UUID_ALLOWED)
"""A UUID in its canonical form (lower case, dashed)."""
