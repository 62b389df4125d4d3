"""Keeps the garbage collector's pauses short while a large batch is queued (the app's GUI loop).

Queuing 100,000 jobs makes about a million objects that live as long as the batch: records,
views, the panels' rows. CPython 3.11 collects its oldest generation whenever that has grown by
a quarter, and each such full collection walks every tracked object with the loop standing
still: 140-190 ms a time for the scheduler alone, 500-850 ms in the app, several times per
feed. So while any feed runs the cyclic collector waits, and when the last one ends everything
alive is frozen (`gc.freeze`: moved to a permanent generation that no collection walks) before
collection resumes.

Frozen objects are still freed by reference counting when they are dropped, as a batch's
records are when it is cleared; only a reference cycle that was already garbage at the freeze
is kept for good. Reference counting frees the feed's own garbage, which holds no cycles.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


class CollectorPause:
    """Counts the feeds that hold the collector; the process has one collector, so one of these."""

    def __init__(self) -> None:
        self._holders = 0
        self._was_enabled = False

    @property
    def holders(self) -> int:
        """Feeds holding the collector now."""
        return self._holders

    def hold(self) -> None:
        """A feed starts: the cyclic collector waits (if it ran at all)."""
        if self._holders == 0:
            self._was_enabled = gc.isenabled()
            gc.disable()
        self._holders += 1

    def release(self) -> None:
        """A feed ended: with the last one, freeze what is alive and collect again."""
        if self._holders == 0:
            raise RuntimeError("released a collector pause that was not held")
        self._holders -= 1
        if self._holders == 0 and self._was_enabled:
            gc.freeze()
            gc.enable()
            log.debug("collector resumed; %d objects frozen", gc.get_freeze_count())


PAUSE = CollectorPause()
