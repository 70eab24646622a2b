"""The full chaos campaign, outside the default suite: `pytest -m slow tests/chaos`
(or `python -m tests.chaos.campaign`, which prints the same report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.campaign import Config, check, format_report, run_campaign


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_full_chaos_campaign_breaks_no_invariant(tmp_path: Path) -> None:
    outcome = run_campaign(Config(workdir=tmp_path / "campaign"))
    report = check(outcome)
    text = format_report(outcome, report, "pytest -m slow tests/chaos/test_chaos_long.py")
    print(text)
    assert outcome.settled, text
    assert report.total_violations == 0, text
