"""Write the golden files the unit tests compare with; tests never write them.

    make golden        # or: PYTHONPATH=src python scripts/regen_golden.py

Writes ``tests/golden/nft/<case>.json`` (one port's contribution, tests/unit/test_golden.py),
``tests/golden/network/<case>.json`` (a network's firewall, tests/unit/test_netfw.py) and the
iptables/ebtables backend's restore inputs (``tests/golden/ebiptables*/<case>.txt``),
removes golden files of cases that no longer exist, and prints what changed: review the diff
(``git diff tests/golden``) before committing it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from unit import test_golden, test_golden_ebiptables, test_golden_ebiptables_network, test_netfw


def write(directory: Path, texts: dict[str, str], suffix: str = ".json") -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in sorted(texts.items()):
        path = directory / f"{name}{suffix}"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(f"wrote {path.relative_to(ROOT)}")
    for stale in sorted(directory.glob(f"*{suffix}")):
        if stale.stem not in texts:
            stale.unlink()
            changed.append(f"removed {stale.relative_to(ROOT)}")
    return changed


def main() -> int:
    changed = write(test_golden.GOLDEN, {n: test_golden.render(n) for n in test_golden.CASES})
    changed += write(test_netfw.GOLDEN, {n: test_netfw.render(n) for n in test_netfw.CASES})
    eb, ebn = test_golden_ebiptables, test_golden_ebiptables_network
    changed += write(eb.GOLDEN, {n: eb.render(n) for n in eb.NAMES}, ".txt")
    changed += write(ebn.GOLDEN, {n: ebn.render(n) for n in ebn.CASES}, ".txt")
    print("\n".join(changed) if changed else "golden files unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
