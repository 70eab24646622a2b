"""The worker's claim states (worker/_state.py, `Claim`): the moves the
runner, the heartbeat and the run's tasks make, and the ones they cannot."""

from __future__ import annotations

import pytest

from orchestrator.clock import SkippingClock
from orchestrator.settings import Settings
from tests.fakes.memory_store import InMemoryStore
from worker._state import CLAIM_MOVES, Claim, LeaseLost, RunState


def _state() -> RunState:
    clock = SkippingClock()
    store = InMemoryStore(Settings(lease_seconds=30, queue_url="http://unused.invalid/q"))
    return RunState(
        workflow_id="r1",
        name="n",
        epoch=1,
        signal_seq=0,
        lease_until=clock.now_ms() + 30_000,
        history={},
        store=store,
        clock=clock,
        lease_ms=30_000,
    )


def test_a_park_closes_the_claim_and_a_refused_park_reopens_it() -> None:
    s = _state()
    assert (s.claim, s.closing, s.lost) == (Claim.RUNNING, False, False)
    s.close()
    assert (s.closing, s.lost) == (True, False)
    s.reopen()
    assert s.claim is Claim.RUNNING


def test_a_lost_claim_stays_lost() -> None:
    s = _state()
    s.close()
    s.lose()
    for move in (s.close, s.reopen, s.lose):
        move()
        assert s.claim is Claim.LOST
    with pytest.raises(LeaseLost):
        s.check_lease()


def test_lost_is_final_in_the_move_table() -> None:
    assert CLAIM_MOVES[Claim.LOST] == frozenset()
    assert Claim.RUNNING in CLAIM_MOVES[Claim.CLOSING]
    s = _state()
    s._move(Claim.RUNNING)  # staying is not a move
    s.lose()
    with pytest.raises(AssertionError):
        s._move(Claim.RUNNING)  # LOST is final


def test_an_expired_lease_loses_the_claim() -> None:
    s = _state()
    s.lease_valid()
    s.clock.advance(31)  # type: ignore[attr-defined]
    with pytest.raises(LeaseLost):
        s.check_lease()
    assert s.claim is Claim.LOST
