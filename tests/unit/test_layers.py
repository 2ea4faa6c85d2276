"""The folders are layers: no module imports from a layer above its own (static, every import).

Read from the source with ``ast`` (imports inside functions and ``TYPE_CHECKING`` blocks
count too), so a forbidden dependency cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Lowest first. A module may import its own layer and any layer below it.
LAYERS: list[set[str]] = [
    {"nwguard", "nwguard.errors", "nwguard.records"},
    {"nwguard.model", "nwguard.ir"},
    {"nwguard.xmlio"},
    {"nwguard.builtin", "nwguard.resolve"},
    {"nwguard.compile", "nwguard.explain"},
    {"nwguard.state"},
    {"nwguard.backends", "nwguard.host"},
    {"nwguard.engine"},
    {"nwguard.api"},
    {"nwguard.daemon"},
    {"nwguard.cli", "nwguard.cni", "nwguard.__main__"},
    {"nwguard_demo"},
]


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, rank = len(n), i
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return rank


def modules() -> dict[str, Path]:
    out = {}
    for f in SRC.glob("nwguard*/**/*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts) + ("/pkg" if is_pkg else "")] = f
    return out


def imports(name: str, source: str) -> list[tuple[int, str]]:
    is_pkg = name.endswith("/pkg")
    mod = name.removesuffix("/pkg")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(line, t) for line, t in found if t.split(".")[0] in ("nwguard", "nwguard_demo")]


def test_every_package_has_a_layer():
    for name in modules():
        layer_of(name.removesuffix("/pkg"))


def violations(sources: dict[str, str]) -> list[str]:
    """``module:line imports target`` for every import of a layer above the module's own."""
    mods = {n.removesuffix("/pkg") for n in sources}
    bad = []
    for name, source in sorted(sources.items()):
        own = layer_of(name.removesuffix("/pkg"))
        for line, target in imports(name, source):
            if target not in mods and target.rsplit(".", 1)[0] in mods:
                target = target.rsplit(".", 1)[0]  # ``from pkg import name``: a name, not a module
            entry = f"{name.removesuffix('/pkg')}:{line} imports {target}"
            if layer_of(target) > own and entry not in bad:
                bad.append(entry)
    return bad


def test_no_module_imports_a_layer_above_its_own():
    assert violations({n: p.read_text() for n, p in modules().items()}) == []


def test_an_upward_import_is_found_even_when_lazy_or_for_typing_only():
    sources = {
        "nwguard.compile/pkg": "",
        "nwguard.compile.program": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..engine import ports\n",
        "nwguard.model.filter": "def f():\n    import nwguard.cli.main\n",
        "nwguard.engine/pkg": "",
        "nwguard.engine.ports": "from ..compile import program\n",
    }
    assert violations(sources) == [
        "nwguard.compile.program:3 imports nwguard.engine.ports",
        "nwguard.model.filter:2 imports nwguard.cli.main",
    ]
