"""IP address learning on the engine's side: learned addresses in, learning requests out.

The compiler (:mod:`nwguard.compile.learning`) takes a port's learned addresses as input and
gives the interim rules plus a :class:`~nwguard.compile.learning.LearningRequest` when the
port still waits for its ``IP``. Here: reading what was learned, and where requests go.
"""

from __future__ import annotations

from collections.abc import Callable

from nwguard.compile.learning import LEARNING_VAR, LearningRequest
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import make_params
from nwguard.state.learned import LearnedStore
from nwguard.state.paths import Paths

RequestSink = Callable[[LearningRequest], None]


def learned_addresses(b: FilterBinding, paths: Paths) -> tuple[str, ...]:
    """The unexpired addresses learned for ``b``'s port (none if the binding gives ``IP``)."""
    if "IP" in b.filterref.param_dict():
        return ()
    entry = LearnedStore(paths).current(b.portdev, b.mac)
    return entry.addresses() if entry is not None else ()


def with_learned(b: FilterBinding, paths: Paths) -> FilterBinding:
    """The binding as ``nwfilter-binding-dumpxml`` shows it: learned addresses as ``IP``.

    They appear as ``<parameter name='IP' .../>``, the parameter the filter sees (spec §3
    step 3); the binding file itself keeps none, so learning goes on (``dhcp``) and a
    delete forgets them.
    """
    learned = learned_addresses(b, paths)
    if not learned:
        return b
    return b.with_params(make_params({**b.filterref.param_dict(), "IP": learned}))


def store_requests(paths: Paths) -> RequestSink:
    """Requests recorded in the learned-address store, for a daemon started later (or
    serving another process) to pick up; warns when no ``nwguardd`` runs."""

    def record(req: LearningRequest) -> None:
        LearnedStore(paths).request(req.port, req.mac, req.mode, req.iface, req.servers)
        if not paths.socket.exists():
            import logging  # only when warning: logging costs 5 ms of every CLI start

            logging.getLogger("nwguard.learning").warning(
                "port %s: its IP address is to be learned (%s=%s) but nwguardd is not running; "
                "until it runs the port has only the interim learning rules",
                req.port,
                LEARNING_VAR,
                req.mode,
            )

    return record
