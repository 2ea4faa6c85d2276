"""What every operation of one client shares: the paths, the lock, objects built on demand."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nwguard.state.files import locked
from nwguard.state.paths import Paths


@dataclass
class Context:
    """Shared state of one client: where things live and the objects built on demand."""

    paths: Paths
    dry_run: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    _held: str | None = field(default=None, init=False, repr=False, compare=False)
    _tlock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )

    @property
    def held(self) -> str | None:
        """``None``, ``"shared"`` or ``"exclusive"``: how this context holds the lock now."""
        return self._held

    @contextlib.contextmanager
    def lock(self, shared: bool = False) -> Iterator[None]:
        """Serialise changes between nwguard processes (and the daemon).

        Re-entrant within one thread: a nested ``lock()`` (a hook that calls back into the
        client while a change holds the lock) is a no-op instead of a self-deadlock on
        ``flock``. Asking for the exclusive lock while holding the shared one is a bug and
        raises RuntimeError. Other threads of this process wait as other processes do.
        """
        with self._tlock:
            if self._held is not None:
                if self._held == "shared" and not shared:
                    raise RuntimeError("exclusive lock requested while holding the shared lock")
                yield
                return
            with locked(self.paths.lock_file, shared=shared):
                self._held = "shared" if shared else "exclusive"
                try:
                    yield
                finally:
                    self._held = None
