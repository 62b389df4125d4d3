"""CollectorPause: the cyclic collector waits while feeds run, then what lives is frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from lama_desktop.cluster.collector import CollectorPause


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_waits_for_the_last_feed_then_freezes_what_lives() -> None:
    gc.enable()
    gc.unfreeze()
    pause = CollectorPause()
    pause.hold()
    pause.hold()
    assert not gc.isenabled() and pause.holders == 2
    pause.release()
    assert not gc.isenabled() and gc.get_freeze_count() == 0  # one feed still runs
    pause.release()
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_a_collector_off_before_the_feed_stays_off_and_nothing_is_frozen() -> None:
    gc.disable()
    gc.unfreeze()
    pause = CollectorPause()
    pause.hold()
    pause.release()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_release_without_a_hold_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="not held"):
        CollectorPause().release()
