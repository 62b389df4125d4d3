"""When the agent drops a silent desktop: `why_gone`, with and without a live connection."""

from lama_desktop.cluster.desktop_sessions import QUIET_LIMIT_S, DesktopSession, why_gone


def session(last_seen: float) -> DesktopSession:
    return DesktopSession(b"rid", "key", "desk", last_seen=last_seen, greeted=True)


def test_a_desktop_heard_within_the_silence_is_kept_whatever_its_connection() -> None:
    for reached in (None, True, False):
        assert why_gone(session(10.0), 12.5, 3.0, reached) == ""


def test_a_silent_desktop_without_heartbeats_is_dropped_after_the_silence() -> None:
    assert why_gone(session(10.0), 13.5, 3.0, None) == "silent for 3.5 s"


def test_a_silent_disconnected_desktop_is_dropped_and_the_reason_says_so() -> None:
    assert why_gone(session(10.0), 13.5, 3.0, False) == "silent for 3.5 s and disconnected"


def test_a_silent_but_connected_desktop_is_busy_and_kept_up_to_the_quiet_limit() -> None:
    assert why_gone(session(0.0), 30.0, 3.0, True) == ""
    assert why_gone(session(0.0), QUIET_LIMIT_S - 0.5, 3.0, True) == ""
    late = why_gone(session(0.0), QUIET_LIMIT_S + 1, 3.0, True)
    assert late == f"silent for {QUIET_LIMIT_S + 1:.0f} s although still connected"
