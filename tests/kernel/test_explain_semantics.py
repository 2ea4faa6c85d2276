"""The frames of ``test_filter_semantics.py``, each checked against ``nwguard explain``
(:mod:`.explain_check`): explain's verdict equals the kernel's, and a drop names its rule."""

from __future__ import annotations

from . import test_filter_semantics as battery
from .explain_check import rerun_with_explain

# the deletion tests' frames cross no bound port once the bindings are gone
rerun_with_explain(
    battery,
    globals(),
    without=(
        "test_deleting_a_binding_removes_every_trace_from_the_kernel",
        "test_deleting_a_binding_removes_every_iptables_rule_of_it",
    ),
)
