"""Key pairs, the authorised-keys file, pairing codes and links."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest
import zmq

from lama_desktop.cluster.auth import GUESSES_PER_ADDRESS, AgentAuthenticator, Peer, RefusalLog
from lama_desktop.cluster.keys import (
    AuthorizedKeys,
    PairingCodes,
    PairingLink,
    is_z85_key,
    load_or_create_keypair,
    pairing_keypair,
)


def test_keypair_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "agent.key"
    first = load_or_create_keypair(path)
    assert is_z85_key(first.public) and is_z85_key(first.secret)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keypair(path) == first
    assert zmq.curve_public(first.secret) == first.public
    assert [p.name for p in path.parent.iterdir()] == ["agent.key"]  # no temp file left


def test_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="damaged"):
        load_or_create_keypair(path)


def test_authorized_keys_add_list_revoke_and_notice_outside_edits(tmp_path: Path) -> None:
    path = tmp_path / "authorized_keys"
    keys = AuthorizedKeys(path)
    one, two = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    assert keys.list() == [] and not keys.contains(one)
    keys.add(one, "Studio PC")
    keys.add(one, "again")  # an existing key keeps its line
    keys.add(two.decode(), "Laptop  with   spaces")
    assert [(k.key, k.name) for k in keys.list()] == [
        (one.decode(), "Studio PC"),
        (two.decode(), "Laptop with spaces"),
    ]
    assert keys.list()[0].added.startswith("20")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Another process (lama-agent keys revoke) edits the file: a running agent sees it.
    other = AuthorizedKeys(path)
    assert [k.name for k in other.revoke("Studio PC")] == ["Studio PC"]
    assert not keys.contains(one) and keys.contains(two)
    assert other.revoke(two.decode())[0].name == "Laptop with spaces"
    assert keys.list() == [] and other.revoke("nobody") == []
    with pytest.raises(ValueError, match="z85"):
        keys.add("short", "x")


def test_authorized_keys_skip_junk_lines(tmp_path: Path) -> None:
    key = zmq.curve_keypair()[0].decode()
    path = tmp_path / "authorized_keys"
    path.write_text(f"# comment\n\ngarbage line\n{key} Desk 2026-01-01T00:00:00Z\n")
    (entry,) = AuthorizedKeys(path).list()
    assert (entry.key, entry.name, entry.added) == (key, "Desk", "2026-01-01T00:00:00Z")


def test_pairing_codes_are_single_use_and_expire(tmp_path: Path) -> None:
    now = [1000.0]
    codes = PairingCodes(tmp_path / "codes", clock=lambda: now[0])
    code = codes.issue(ttl=600)
    assert len(code) == 8 and code.isalnum() and codes.live() == [code]
    assert codes.consume(code.lower())  # codes are read case-insensitively
    assert not codes.consume(code)  # reused
    late = codes.issue(ttl=600)
    now[0] += 601
    assert codes.live() == []
    assert not codes.consume(late)  # expired
    assert not codes.consume("../../etc")  # never touches paths from a peer
    assert not codes.consume("ABCDEFGH")  # never issued
    # Another process (lama-agent pair) issuing into the same folder is seen at once.
    shared = PairingCodes(tmp_path / "codes", clock=lambda: now[0])
    fresh = shared.issue()
    assert codes.live() == [fresh] and codes.consume(fresh) and not shared.consume(fresh)


def test_pairing_link_round_trip_and_clear_errors() -> None:
    key = zmq.curve_keypair()[0].decode()
    link = PairingLink("192.168.1.20", 7890, key, "ABCD2345")
    text = link.format()
    assert text.startswith("lama://192.168.1.20:7890/?key=") and text.endswith("&code=ABCD2345")
    assert PairingLink.parse(text) == link
    assert PairingLink.parse(f"  {text}\n") == link
    assert link.address == "tcp://192.168.1.20:7890"
    v6 = PairingLink("fe80::1", 7890, key, "")
    assert PairingLink.parse(v6.format()) == v6 and v6.address == "tcp://[fe80::1]:7890"
    for bad, problem in [
        ("http://host:1/?key=x", "lama://"),
        ("lama://host/?key=x", "host and a port"),
        ("lama://host:99999/?key=x", "port"),
        ("lama://host:7890/?key=short&code=ABCDEFGH", "key="),
        (text.replace("ABCD2345", "ab!"), "code="),
    ]:
        with pytest.raises(ValueError, match=problem):
            PairingLink.parse(bad)


def test_zap_decisions_paired_pending_refused(tmp_path: Path) -> None:
    keys = AuthorizedKeys(tmp_path / "authorized_keys")
    codes = PairingCodes(tmp_path / "codes")
    boss, server = zmq.curve_keypair()[0], zmq.curve_keypair()[0]
    known, stranger = zmq.curve_keypair()[0].decode(), zmq.curve_keypair()[0].decode()
    keys.add(known, "known")
    ctx = zmq.Context()
    try:
        auth = AgentAuthenticator(ctx, keys, codes, preauthorized=[boss], server_key=server)
        assert auth.decide(boss.decode()) == f"paired:{boss.decode()}"
        assert auth.decide(known) == f"paired:{known}"
        assert auth.decide(stranger) is None
        code = codes.issue()
        pairing = pairing_keypair(code, server).public.decode()
        assert pairing_keypair(code.lower(), server.decode()).public.decode() == pairing
        assert pairing_keypair(code, zmq.curve_keypair()[0]).public.decode() != pairing
        assert auth.decide(stranger) is None  # a live code lets in only its own pairing key
        assert auth.decide(pairing) == f"pending:{pairing}"
        # The same unknown key again is one guess, not ten: a revoked desktop that keeps
        # reconnecting does not lock its own address out of pairing again.
        for _ in range(GUESSES_PER_ADDRESS * 2):
            assert auth.decide(stranger, "10.0.0.7") is None
        assert not auth.banned("10.0.0.7")
        codes.consume(code)
        assert auth.decide(pairing) is None
    finally:
        ctx.term()
    assert Peer.from_user_id(f"pending:{stranger}") == Peer("pending", stranger)
    assert Peer.from_user_id("anonymous") is None and Peer.from_user_id(None) is None


def test_refusals_from_one_address_are_logged_once_a_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    refusals = RefusalLog(period=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="lama_desktop.cluster.auth"):
        for _ in range(50):
            refusals.refused("10.0.0.9", "unknown key K")
        refusals.refused("10.0.0.8", "unknown key L")
        now[0] = 61.0
        refusals.refused("10.0.0.9", "unknown key K")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "49 more refused" in lines[2]


def test_files_are_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "authorized_keys"
    keys = AuthorizedKeys(path)
    keys.add(zmq.curve_keypair()[0], "a")
    inode = path.stat().st_ino
    time.sleep(0.01)
    keys.add(zmq.curve_keypair()[0], "b")
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["authorized_keys"]
