"""The security tier: one embedded stack of its own (its own moto server, so
other tiers' resets never touch it), with no background sweeps, so that
"nothing written" is a before/after comparison of the table and the queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from tests.conftest import TEST_SETTINGS
from tests.security._state import footprint


@pytest.fixture(scope="package")
def sec_stack() -> Iterator[LocalStack]:
    stack = LocalStack(
        clock=SkippingClock(), settings=TEST_SETTINGS, background_interval=3600, allow_reset=True
    ).start()
    yield stack
    stack.stop()


@pytest.fixture
def unchanged(sec_stack: LocalStack) -> Iterator[Callable[[], None]]:
    """Call it to assert that nothing was written since the test began."""
    before = footprint(sec_stack)

    def check() -> None:
        assert footprint(sec_stack) == before

    yield check
