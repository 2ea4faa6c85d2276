"""Can a rule ever be bound? The compiler's own refusals, asked at define time (pure).

A filter is compiled only when a port binds it; a rule the compiler can never express (a lone
``dstportend``, a ``state`` from a variable...) would be
refused then, far from its definition. :func:`unbindable` runs the same code on one rule
with no port and no values, so define refuses what bind would always refuse. Problems that
depend on a variable's value are left to bind: they are not certain at define.
"""

from __future__ import annotations

import re

from nwguard.compile.matches import _COMPANIONS, Field, NotShareable, rule_matches
from nwguard.compile.program import ethernet_copies, l4_copies
from nwguard.errors import CompileError
from nwguard.ir.nodes import Stmt
from nwguard.ir.ports import Lookup
from nwguard.model.filter import AttrValue, Rule
from nwguard.model.protocols import Layer
from nwguard.model.values import VarRef

__all__ = ["unbindable"]


class _NoSlots:
    """A slot sink that keeps nothing: only whether the statements can be built matters."""

    def lookup(self, fields: list[tuple[Field, VarRef]], negated: bool) -> Stmt:
        return Lookup("out", tuple(f.expr for f, _ in fields), "%0", negated)


def unbindable(rule: Rule) -> tuple[str | None, str] | None:
    """``(attribute or None, message)`` when compiling ``rule`` always fails, else None."""
    try:
        _compile(rule)
    except CompileError as exc:
        return _attribute(rule, exc.message), exc.message
    return None


def _compile(rule: Rule) -> None:
    if rule.layer is Layer.ETHERNET:
        ethernet_copies(rule)
    else:
        l4_copies(rule)
    try:
        rule_matches(rule, _NoSlots())
    except NotShareable:
        # a variable with a mask or a range end is expanded per port from its values; check
        # what does not depend on them
        rule_matches(rule.replace(attrs=_without_variable_pairs(rule.attrs)), _NoSlots())


def _without_variable_pairs(attrs: tuple[AttrValue, ...]) -> tuple[AttrValue, ...]:
    names = {a.name: a for a in attrs}
    drop: set[str] = set()
    for a in attrs:
        companion = _COMPANIONS.get(a.name)
        pair = [a] + ([names[companion]] if companion in names else [])
        if any(isinstance(p.value, VarRef) for p in pair):
            drop.update(p.name for p in pair)
    return tuple(a for a in attrs if a.name not in drop)


def _attribute(rule: Rule, message: str) -> str | None:
    """The rule's attribute the compiler's message names (the longest, as 'dstportend')."""
    for name in sorted((a.name for a in rule.attrs), key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            return name
    return None
