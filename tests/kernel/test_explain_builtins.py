"""The frames of ``test_builtin_filters.py`` (clean-traffic and the other built-ins), each
checked against ``nwguard explain`` (:mod:`.explain_check`)."""

from __future__ import annotations

from . import test_builtin_filters as battery
from .explain_check import rerun_with_explain

rerun_with_explain(
    battery, globals(), without=("test_clean_traffic_on_one_port_leaves_other_ports_alone",)
)
