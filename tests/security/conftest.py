"""The security tier: one embedded stack for the whole tier (its own API and
moto server), with no background sweeps, so that "nothing written" is a
before/after comparison of the table and the queue.

moto's state is global to the process: a reset by any test (other tiers reset
per test, and xdist interleaves tiers in one process) empties this stack too.
`sec_stack` therefore checks, per test, that the table is there, and recreates
the resources (same names, same URLs) when it is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.bootstrap import bootstrap
from tests.conftest import TEST_SETTINGS
from tests.security._state import CONFIGURED_HOST, footprint


@pytest.fixture(scope="package")
def _tier_stack() -> Iterator[LocalStack]:
    stack = LocalStack(
        clock=SkippingClock(),
        settings=TEST_SETTINGS,
        background_interval=3600,
        allowed_hosts=(CONFIGURED_HOST,),  # as `orchestrator dev --allowed-host`
    ).start()
    yield stack
    stack.stop()


@pytest.fixture
def sec_stack(_tier_stack: LocalStack) -> LocalStack:
    stack = _tier_stack
    if stack.settings.table not in stack.ddb.list_tables()["TableNames"]:
        assert stack.moto is not None
        bootstrap(stack.session, stack.moto.url, stack.settings)
    return stack


@pytest.fixture
def unchanged(sec_stack: LocalStack) -> Iterator[Callable[[], None]]:
    """Call it to assert that nothing was written since the test began."""
    before = footprint(sec_stack)

    def check() -> None:
        assert footprint(sec_stack) == before

    yield check
