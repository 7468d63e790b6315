"""Every set of faults a learner can draw from a catalogue, tried on a real working lab.

A learner draws `k` faults at once, so each must still apply after the ones before it (in
catalogue order, as `inject` does), still be there afterwards (the hints talk about it), and
the repairs together must heal the lab. A fault tried alone proves none of that.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from course.faults import Catalogue, Fault, Roles

Draw = tuple[Fault, ...]


def drawable(catalogue: Catalogue) -> list[Draw]:
    """Every draw `draw()` can return: k-combinations in catalogue order, none kept apart."""
    return [
        d
        for d in itertools.combinations(catalogue.faults, catalogue.k)
        if catalogue.compatible(list(d))
    ]


def ids(d: Draw) -> str:
    return "+".join(f.id for f in d)


def problem(
    d: Draw, roles: Roles, works: Callable[[], bool], broken_too: bool = True
) -> str | None:
    """What goes wrong when the faults of `d` are injected then repaired; None if nothing.

    The repairs run in draw order, and each must leave the faults after it in place. Every
    repair runs even after a failure, so a lab shared between draws comes back working
    (`works()` is checked last: a draw that cannot be healed says so). `broken_too=False`
    skips proving the broken lab fails (a failing probe waits for its timeouts; each fault
    alone is proven to break its lab elsewhere, and one fault undoing another shows in
    `present`).
    """
    found: str | None = None
    for fault in d:
        try:
            fault.apply(roles)
        except Exception as e:
            found = found or f"applying {fault.id} raised {e!r}"
    hidden = [f.id for f in d if f.present is not None and not f.present(roles)]
    if hidden and not found:
        found = f"not present after injecting: {hidden}"
    if broken_too and not found and works():
        found = "the lab still works"
    for i, fault in enumerate(d):
        assert fault.repair is not None, fault.id
        try:
            fault.repair(roles)
        except Exception as e:
            found = found or f"repairing {fault.id} raised {e!r}"
        # A repair that also removes a later fault leaves the learner a lab healed by
        # half a fix, and a hint about a fault that is gone.
        gone = [f.id for f in d[i + 1 :] if f.present is not None and not f.present(roles)]
        if gone:
            found = found or f"repairing {fault.id} also removed {gone}"
    if not works():
        found = (found + "; " if found else "") + "the repairs do not heal the lab"
    return found
