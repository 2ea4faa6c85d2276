"""Whitespace inside variable references, as libvirt 9.0.0 takes it.

The table is what ``virsh nwfilter-define`` then ``nwfilter-dumpxml`` of libvirt 9.0.0 did
with ``<tcp srcportstart='...'/>`` (tools/libvirt-ref): the dumped form, or None when libvirt
refused the filter. ``$B[1]x`` is the one intended deviation: libvirt ignores text after
``]``, nwguard refuses it (README, "Intended deviations from libvirt").
"""

from __future__ import annotations

import pytest

from nwguard.errors import NwguardError
from nwguard.xmlio.filter_xml import parse_filter, write_filter

LIBVIRT = {
    "$B[  @0 ] ": "$B",
    "$B[ 1 ]": "$B[1]",
    "$B[@ 0]": "$B",
    "$B[1]  ": "$B[1]",
    "$B[@1\t]": "$B[@1]",
    "$B[@1 ]  \t": "$B[@1]",
    "$B[ @ 1 ]": "$B[@1]",
    " $B": None,
    "$B ": None,
    "$B [@0]": None,
    "$ B": None,
    "$B x": None,
}


def _doc(value: str) -> str:
    value = value.replace("\t", "&#9;")  # a literal tab would be normalised by XML itself
    return (
        "<filter name='ws' chain='root'><rule action='accept' direction='out'>"
        f"<tcp srcportstart='{value}'/></rule></filter>"
    )


@pytest.mark.parametrize("written", sorted(LIBVIRT))
def test_like_libvirt(written: str) -> None:
    dumped = LIBVIRT[written]
    if dumped is None:
        with pytest.raises(NwguardError, match="srcportstart"):
            parse_filter(_doc(written))
        return
    f = parse_filter(_doc(written))
    assert f"srcportstart='{dumped}'" in write_filter(f)
    assert parse_filter(write_filter(f)) == f


def test_deviation_text_after_the_bracket_is_refused() -> None:
    """libvirt 9.0.0 defines ``$B[1]x`` as ``$B[1]``; nwguard names the attribute instead."""
    with pytest.raises(
        NwguardError, match=r"line 1 .*tcp/@srcportstart: illegal value '\$B\[1\]x'"
    ):
        parse_filter(_doc("$B[1]x"))
