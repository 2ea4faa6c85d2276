"""compile_port: libvirt's rule layout expressed as nftables chains, sets and copies.

Rules are checked through :func:`show`, a compact nft-like text of one rendered rule
(``ether.type==0x800 jump <sub-chain>``), so the assertions read like the spec's tables.
"""

from __future__ import annotations

import pytest

from nwguard.compile.program import PortCompiler, compile_port
from nwguard.errors import CompileError
from nwguard.model.filter import Filter
from nwguard.resolve import resolve
from nwguard.xmlio.filter_xml import parse_filter


def filters(*docs: str) -> dict[str, Filter]:
    return {f.name: f for f in (parse_filter(d) for d in docs)}


# ----------------------------------------------------------------------------- regressions


def test_equal_subchains_with_different_variables_do_not_share_sets() -> None:
    """Two sub-chains of one port with equal rules but different variables used to get the
    same content-addressed name and so one set holding both values: ``ipv4-a`` (src must be
    $A) and ``ipv4-b`` (src must be $B) then each let $A *or* $B through."""
    fs = filters(
        "<filter name='top' chain='root'><filterref filter='a'/><filterref filter='b'/></filter>",
        "<filter name='a' chain='ipv4-a'><rule action='return' direction='out'>"
        "<ip srcipaddr='$A'/></rule><rule action='drop' direction='out'/></filter>",
        "<filter name='b' chain='ipv4-b'><rule action='return' direction='out'>"
        "<ip srcipaddr='$B'/></rule><rule action='drop' direction='out'/></filter>",
    )
    params = {"A": ("10.0.0.1",), "B": ("10.0.0.2",)}
    c = compile_port("p1", resolve(fs, "top", params))
    assert len(c.sets) == 2
    assert sorted(map(sorted, c.elements.values())) == [
        [["p1", "10.0.0.1"]],
        [["p1", "10.0.0.2"]],
    ]
    # The per-shape fast path takes its elements from the same slots.
    pc = PortCompiler(fs)
    pc.compile("p0", "top", params)
    assert pc.compile("p1", "top", params).elements == c.elements


def test_rule_with_comment_compiles() -> None:
    """A ``comment`` attribute (any protocol) crashed compile_port with a TypeError."""
    fs = filters(
        "<filter name='t'><rule action='drop' direction='out'>"
        "<tcp dstportstart='25' comment='no mail'/></rule>"
        "<rule action='drop' direction='out'><mac protocolid='ipv6' comment='no v6'/></rule>"
        "</filter>"
    )
    c = compile_port("p1", resolve(fs, "t", {}))
    assert set(c.dispatch) == {"l2o", "l4o", "l4i"}
    assert "no mail" not in str(c.chains)


def test_state_from_a_variable_is_a_compile_error() -> None:
    """``state='$S'`` crashed with a TypeError (a VarRef iterated as a state list)."""
    fs = filters(
        "<filter name='t'><rule action='accept' direction='out'><tcp state='$S'/></rule></filter>"
    )
    with pytest.raises(CompileError, match="'state' cannot come from a variable"):
        compile_port("p1", resolve(fs, "t", {"S": ("NEW",)}))
