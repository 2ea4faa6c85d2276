"""Backends: they alone turn the IR into a kernel's rules.

Each backend has an :class:`Executor`: it applies one IR batch as one all-or-nothing
transaction or raises :class:`~nwguard.errors.ApplyError` and changes nothing.
:class:`RecordingExecutor` stands in for a kernel in unit tests.
"""

from __future__ import annotations

from typing import Protocol

from nwguard.ir.nodes import Batch
from nwguard.ir.ports import PortBatch


class Executor(Protocol):
    """Applies IR batches to a kernel, one transaction each."""

    def apply(self, batch: Batch | PortBatch) -> None: ...


class RecordingExecutor:
    """Keeps every batch it is given; ``fail`` makes the next ``fail`` calls raise ApplyError."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[Batch | PortBatch] = []
        self.fail = fail

    def apply(self, batch: Batch | PortBatch) -> None:
        from nwguard.errors import ApplyError

        if self.fail:
            self.fail -= 1
            raise ApplyError("the recording executor was told to refuse this batch")
        self.batches.append(batch)
