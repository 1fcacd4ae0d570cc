"""Reconciliation: pure functions from the broker's reports (the truth) and our book to
corrective actions, plus the emergency size check. A thin runner (in the daemon) fetches
the reports, applies the actions and records each one in reconciliation_events.

Policy for a position the broker holds and we do not know (a manual trade, or one opened
while we were down): ``adopt`` it into our book, or ``flatten`` it at the broker. A
position we believe in that the broker no longer holds is closed internally. A size
difference adopts the broker's size. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stairway.core.broker import PositionReport


class UnknownPositionPolicy(enum.Enum):
    ADOPT = "adopt"
    FLATTEN = "flatten"


@dataclass(frozen=True)
class Correction:
    instrument: str
    kind: str  # adopt_unknown | flatten_unknown | close_missing | adopt_size | flatten_excess
    ours: float
    broker: float
    order_units: float  # signed units to send to the broker (0: book-only correction)
    book_units: float  # what our book holds afterwards (before any order fills)
    detail: str


def reconcile(
    book: dict[str, float], reports: list[PositionReport], policy: UnknownPositionPolicy, tolerance: float = 1e-6
) -> list[Correction]:
    """Corrections that make our book agree with the broker's positions."""
    broker: dict[str, float] = {}
    for r in reports:
        broker[r.instrument] = broker.get(r.instrument, 0.0) + r.units
    out = []
    for inst in sorted(set(book) | set(broker)):
        ours, theirs = book.get(inst, 0.0), broker.get(inst, 0.0)
        if abs(ours - theirs) <= tolerance:
            continue
        if abs(ours) <= tolerance:  # the broker holds something we never opened
            if policy is UnknownPositionPolicy.ADOPT:
                out.append(
                    Correction(
                        inst,
                        "adopt_unknown",
                        ours,
                        theirs,
                        0.0,
                        theirs,
                        f"adopted {theirs:+g} units found at the broker",
                    )
                )
            else:
                out.append(
                    Correction(
                        inst,
                        "flatten_unknown",
                        ours,
                        theirs,
                        -theirs,
                        theirs,
                        f"flattening {theirs:+g} units found at the broker",
                    )
                )
        elif abs(theirs) <= tolerance:
            out.append(
                Correction(
                    inst,
                    "close_missing",
                    ours,
                    theirs,
                    0.0,
                    0.0,
                    f"broker no longer holds our {ours:+g} units: closed internally",
                )
            )
        else:
            out.append(
                Correction(
                    inst,
                    "adopt_size",
                    ours,
                    theirs,
                    0.0,
                    theirs,
                    f"broker holds {theirs:+g}, we had {ours:+g}: adopted the broker's size",
                )
            )
    return out


def excess_over_limit(units: float, max_units: float, instrument: str) -> Correction | None:
    """The 30-second emergency check: a position above the maximum has its excess flattened."""
    if abs(units) <= max_units + 1e-9:
        return None
    excess = units - (max_units if units > 0 else -max_units)
    return Correction(
        instrument,
        "flatten_excess",
        units,
        units,
        -excess,
        units,
        f"position {units:+g} exceeds the maximum {max_units:g}: flattening {excess:+g}",
    )
