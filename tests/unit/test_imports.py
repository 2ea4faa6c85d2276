"""The pure core imports nothing with side effects (STYLE.md, point 1).

Every module under the pure packages is imported in a fresh interpreter; afterwards none of
the side-effect modules may have been loaded, directly or through another module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# The pure core: parse, resolve, compile. Missing ones are skipped (not written yet).
PURE = [
    "nwguard.model",
    "nwguard.ir",
    "nwguard.xmlio",
    "nwguard.compile",
    "nwguard.resolve",
    "nwguard.records",
]

# What the pure core must never pull in: the kernel, processes and the impure layers.
FORBIDDEN = [
    "subprocess",
    "nftables",
    "pyroute2",
    "nwguard.backends",
    "nwguard.host",
    "nwguard.daemon",
]

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    pure, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    imported = []
    for name in pure:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not written yet
            raise
        imported.append(name)
        for info in pkgutil.walk_packages(getattr(mod, "__path__", []), name + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
    print(json.dumps({"imported": imported, "bad": bad}))
    """
)


def test_pure_core_imports_no_side_effect_modules():
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(PURE), json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["imported"], "none of the pure modules exists"
    assert result["bad"] == [], (
        f"the pure core ({', '.join(PURE)}) loaded side-effect modules {result['bad']}; "
        f"imported: {result['imported']}"
    )
