"""``nwguard explain``: why a packet passes or is dropped, in the terms of the filters (pure).

:func:`port_contribution` compiles a binding exactly as the engine does (learned addresses
are the binding's ``IP`` parameter; a port still learning gets the interim rules);
:func:`~nwguard.explain.evaluate.explain` walks a decoded packet
(:func:`~nwguard.explain.packet.decode`) through it.
"""

from __future__ import annotations

from collections.abc import Mapping

from nwguard.compile import learning
from nwguard.compile.program import PortCompiler
from nwguard.explain.evaluate import Conntrack, Explanation, explain, to_json, to_text
from nwguard.explain.packet import Packet, decode
from nwguard.ir.ports import Contribution
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import Filter
from nwguard.resolve.resolver import UnresolvedError

__all__ = [
    "Conntrack",
    "Explanation",
    "Packet",
    "decode",
    "explain",
    "port_contribution",
    "to_json",
    "to_text",
]


def port_contribution(b: FilterBinding, filters: Mapping[str, Filter]) -> Contribution:
    """The rules the engine compiles for binding ``b`` (its ``IP`` parameter holds any learned
    addresses, as ``nwfilter-binding-dumpxml`` shows them)."""
    try:
        return PortCompiler(filters).compile(b.portdev, b.filterref.filter, learning.params(b))
    except UnresolvedError as exc:
        contrib, _request = learning.interim(b, exc)
        return contrib
