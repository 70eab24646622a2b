"""The fault plan's spec and decisions (orchestrator/testing_faults/plan.py),
without AWS: per-service rates (``s3.5xx``) parsed in both forms, mistakes
refused, and the decision for each call taken from its service's rates."""

from __future__ import annotations

import pytest

from orchestrator.testing_faults import SERVICES, parse


def test_service_rates_parse_in_both_forms_and_apply_to_that_service_only() -> None:
    kv = parse("seed=1,throttle=0.1,5xx=0.01,s3.5xx=0.2,s3.attempt.throttle=0.3,s3.latency=0.4")
    js = parse(
        '{"seed": 1, "throttle": 0.1, "5xx": 0.01,'
        ' "s3": {"5xx": 0.2, "attempt.throttle": 0.3, "latency": 0.4}}'
    )
    for plan in (kv, js):
        assert plan.service_rates == {"s3": {"5xx": 0.2, "attempt.throttle": 0.3, "latency": 0.4}}
        assert plan.rates == {"throttle": 0.1, "5xx": 0.01}
        # S3 calls: the general rates, with S3's own on top.
        assert plan.call_rates("s3.PutObject") == {"throttle": 0.1, "5xx": 0.2, "latency": 0.4}
        assert plan.attempt_rates_for("s3.GetObject") == {"throttle": 0.3}
        # Other services keep the general rates.
        assert plan.call_rates("dynamodb.PutItem") == {"throttle": 0.1, "5xx": 0.01}
        assert plan.attempt_rates_for("sqs.SendMessage") == {}
    assert "s3" in SERVICES


def test_scope_attempt_moves_a_services_error_kinds_too() -> None:
    plan = parse("scope=attempt,5xx=0.1,s3.throttle=0.2,s3.lost=0.3")
    assert plan.call_rates("s3.PutObject") == {"lost": 0.3}
    assert plan.attempt_rates_for("s3.PutObject") == {"5xx": 0.1, "throttle": 0.2}
    assert plan.attempt_rates_for("dynamodb.Query") == {"5xx": 0.1}


@pytest.mark.parametrize(
    "bad",
    [
        "s3.explode=0.1",  # no such kind
        "s3.duplicate=0.1",  # duplicates are SQS deliveries
        "s3.attempt.lost=0.1",  # lost is not an attempt kind
        "s3.5xx=1.5",  # not a rate
        "s4.5xx=0.1",  # no such service
        '{"s3": {"5xx": 2}}',
    ],
)
def test_service_rate_mistakes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse(bad)


def test_the_decision_for_a_call_uses_its_services_rates() -> None:
    plan = parse("seed=3,5xx=1.0,s3.5xx=0,s3.lost=1.0")
    assert plan.decide_call("s3.PutObject", "") == ("lost", 0.0)
    assert plan.decide_call("s3.GetObject", "") == ("lost", 0.0)
    assert plan.decide_call("dynamodb.PutItem", "") == ("5xx", 0.0)
    only_s3 = parse("seed=3,s3.attempt.throttle=1.0")
    assert only_s3.decide_attempt("s3.GetObject") == "throttle"
    assert only_s3.decide_attempt("dynamodb.PutItem") is None
    assert only_s3.decide_call("dynamodb.PutItem", "") == (None, 0.0)
    # ops and exclude still decide which calls get faults at all.
    excluded = parse('{"s3": {"5xx": 1.0}, "exclude": ["s3.GetObject"]}')
    assert excluded.decide_call("s3.GetObject", "") == (None, 0.0)
    assert excluded.decide_call("s3.PutObject", "") == ("5xx", 0.0)


def test_service_rates_are_drawn_at_their_rate() -> None:
    plan = parse("seed=11,s3.5xx=0.3,s3.latency=0.5,latency_ms=10-20")
    n = 4000
    decisions = [plan.decide_call("s3.GetObject", "") for _ in range(n)]
    failed = sum(kind == "5xx" for kind, _ in decisions) / n
    delayed = sum(delay > 0 for _, delay in decisions) / n
    assert 0.27 < failed < 0.33 and 0.47 < delayed < 0.53
    assert all(0.01 <= d <= 0.02 for _, d in decisions if d)
    assert {kind for kind, _ in decisions} == {None, "5xx"}


def test_sqs_rates_decide_duplicate_deliveries() -> None:
    plan = parse("seed=2,sqs.duplicate=1.0")
    assert [kind for kind, _, _ in plan.duplicates([{"Body": "x"}])] == ["duplicate"]
    assert parse("seed=2,s3.5xx=1.0").duplicates([{"Body": "x"}]) == []
