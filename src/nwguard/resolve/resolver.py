"""Resolution: a binding's filter DAG → its ordered rule instances (pure, libvirt semantics).

* Flatten depth-first in document order; each ``<filterref>`` inserts the referenced filter's
  entries at its position, and they keep their own filter's chain and chain priority.
* Variables: the binding's parameters (plus ``MAC``) win over values given by a nested
  ``<filterref>``, which only fill in names not yet defined.
* Iterators: variables of one iterator are walked in parallel (equal lengths required),
  different iterators form a cartesian product, first iterator fastest; repeated tuples
  are skipped.
* Order: bump a non-root rule's priority up to its chain priority, then a stable sort with
  root-chain rules first, then by priority.

>>> from nwguard.model.filter import Filter, Rule, AttrValue
>>> from nwguard.model.values import VarRef
>>> f = Filter("f", "u", entries=(Rule("accept", "out", protocol="ip",
...     attrs=(AttrValue("srcipaddr", VarRef("IP")),)),))
>>> [r.combos for r in resolve({"f": f}, "f", {"IP": ("10.0.0.1", "10.0.0.2")})]
[(('10.0.0.1',), ('10.0.0.2',))]
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from nwguard.errors import ResolveError
from nwguard.model.filter import Filter, FilterRef, Rule
from nwguard.model.values import VarRef
from nwguard.records import ValueRecord

Env = Mapping[str, tuple[str, ...]]


class UnresolvedError(ResolveError):
    """Variables without values (``missing`` holds their names, for IP learning)."""

    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        names = ", ".join(sorted(missing))
        super().__init__(
            "cannot instantiate filter due to unresolvable variables or unavailable list "
            f"elements: {names}"
        )


class RuleInstance(ValueRecord):
    """A rule in its place: chain, priorities, and the value tuples of its variables.

    ``path``: the ``<filterref>`` names from the bound filter down to ``filter``; ``index``:
    the rule's 1-based position among ``filter``'s rules.
    """

    rule: Rule
    filter: str
    chain: str
    chain_priority: int
    priority: int
    variables: tuple[VarRef, ...]
    combos: tuple[tuple[str, ...], ...]  # one tuple of values (per variable) per expansion
    path: tuple[str, ...] = ()
    index: int = 0


def resolve(filters: Mapping[str, Filter], top: str, params: Env) -> list[RuleInstance]:
    """Flatten ``top`` for a port with ``params``; raise ResolveError/UnresolvedError."""
    return instantiate(flatten(filters, top), params)


class Pending(ValueRecord):
    """A rule in its final place, before the port's values are known.

    ``defaults``: the values nested ``<filterref>`` parameters give on the way down (the
    outer ones win); the port's own parameters override them.
    """

    rule: Rule
    filter: str
    chain: str
    chain_priority: int
    priority: int
    defaults: Env
    variables: tuple[VarRef, ...] = ()
    path: tuple[str, ...] = ()
    index: int = 0


def flatten(filters: Mapping[str, Filter], top: str) -> list[Pending]:
    """The DAG below ``top`` as an ordered rule list; independent of any port (cacheable)."""
    out: list[_Pending] = []
    _flatten(filters, top, {}, out, (top,))
    pending = [
        Pending(
            p.rule,
            p.filter.name,
            p.filter.chain,
            p.filter.priority,
            _bumped(p),
            p.env,
            p.rule.variables(),
            p.path,
            p.index,
        )
        for p in out
    ]
    return sorted(pending, key=lambda i: (i.chain != "root", i.priority))


def _bumped(p: _Pending) -> int:
    chain, chain_prio, prio = p.filter.chain, p.filter.priority, p.rule.priority
    return chain_prio if chain != "root" and chain_prio > prio else prio


def instantiate(pending: list[Pending], params: Env) -> list[RuleInstance]:
    """Give a flattened list the values of one port; raise UnresolvedError if any is missing."""
    envs = [{**p.defaults, **params} if p.defaults else params for p in pending]
    missing: set[str] = set()
    for p, env in zip(pending, envs, strict=True):
        if p.variables:
            missing |= _missing(p.rule, env)
    if missing:
        raise UnresolvedError(missing)
    return [
        RuleInstance(
            p.rule,
            p.filter,
            p.chain,
            p.chain_priority,
            p.priority,
            p.variables,
            expand(p.variables, env),
            p.path,
            p.index,
        )
        for p, env in zip(pending, envs, strict=True)
    ]


class _Pending(ValueRecord):
    rule: Rule
    filter: Filter
    env: Env
    path: tuple[str, ...]
    index: int


def _flatten(
    filters: Mapping[str, Filter], name: str, env: Env, out: list[_Pending], path: tuple[str, ...]
) -> None:
    f = filters.get(name)
    if f is None:
        raise ResolveError(f"referenced filter '{name}' is missing (via {' -> '.join(path)})")
    index = 0
    for entry in f.entries:
        if isinstance(entry, Rule):
            index += 1
            out.append(_Pending(entry, f, env, path, index))
            continue
        assert isinstance(entry, FilterRef)
        if entry.filter in path:
            loop = " -> ".join((*path, entry.filter))
            raise ResolveError(f"filter loop: {loop}")
        child_env = {**entry.param_dict(), **env}  # the caller's values win
        _flatten(filters, entry.filter, child_env, out, (*path, entry.filter))


def _missing(rule: Rule, env: Env) -> set[str]:
    missing = set()
    for ref in rule.variables():
        values = env.get(ref.name)
        if values is None or (ref.index is not None and ref.index >= len(values)):
            missing.add(ref.name)
    return missing


def expand(variables: tuple[VarRef, ...], env: Env) -> tuple[tuple[str, ...], ...]:
    """All value tuples of ``variables`` in libvirt's odometer order, repeats skipped."""
    if not variables:
        return ((),)
    if len(variables) == 1 and variables[0].index is None:  # the common case: one list
        return tuple((v,) for v in dict.fromkeys(env[variables[0].name]))
    groups: dict[object, list[int]] = {0: []}  # iterator key -> positions in `variables`
    for i, ref in enumerate(variables):
        key: object = ref.iterator if ref.index is None else ("index", i)
        groups.setdefault(key, []).append(i)
    group_rows = [_group_rows(variables, idx, env) for idx in groups.values() if idx]
    combos = []
    # itertools.product varies the last factor fastest; libvirt varies the first fastest.
    for picked in itertools.product(*reversed(group_rows)):
        values: list[str] = [""] * len(variables)
        for rows_choice, idx in zip(
            reversed(picked), [i for i in groups.values() if i], strict=True
        ):
            for pos, val in zip(idx, rows_choice, strict=True):
                values[pos] = val
        combos.append(tuple(values))
    return tuple(combos)


def _group_rows(variables: tuple[VarRef, ...], idx: list[int], env: Env) -> list[tuple[str, ...]]:
    """The distinct parallel rows of one iterator group."""
    refs = [variables[i] for i in idx]
    if refs[0].index is not None:
        return [(env[refs[0].name][refs[0].index],)]
    lists = [env[r.name] for r in refs]
    if len({len(v) for v in lists}) > 1:
        names = ", ".join(r.name for r in refs)
        raise ResolveError(
            f"cardinality of list items must be the same for processing them in parallel: {names}"
        )
    rows: list[tuple[str, ...]] = []
    for row in zip(*lists, strict=True):
        if row not in rows:
            rows.append(row)
    return rows


def sort_instances(instances: list[RuleInstance]) -> list[RuleInstance]:
    """libvirt's order: bump non-root rules to their chain priority, root chain first."""
    bumped = [
        i
        if i.chain == "root" or i.chain_priority <= i.priority
        else _with_priority(i, i.chain_priority)
        for i in instances
    ]
    return sorted(bumped, key=lambda i: (i.chain != "root", i.priority))


def _with_priority(i: RuleInstance, priority: int) -> RuleInstance:
    bumped: RuleInstance = i.replace(priority=priority)
    return bumped


def references(filters: Mapping[str, Filter], top: str) -> set[str]:
    """Every filter name reachable from ``top`` (including it); missing ones included."""
    seen: set[str] = set()
    stack = [top]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        f = filters.get(name)
        if f is not None:
            stack.extend(r.filter for r in f.refs)
    return seen
