"""The large-value phase of the benchmark end to end on two small sizes: it runs,
writes its JSON, and its figures are exactly the requests the engine makes for a
value inline and in S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.prices import PRICES
from benchmarks.values import ValuesConfig

W, S = 2, ValuesConfig.steps
SMALL, LARGER = 100, 2048
# A worker's own requests, per process and time, not per run: the meter keeps them
# out of the runs' capacity (partition WF#<id>), and they may fall in any window.
BOOKKEEPING = {"worker registry", "get QUEUES", "query WORKERS", "query index by_created"}


# The slow tier (`make test-slow`): a benchmark phase, kept out of `make test`'s
# 8 minutes; `make bench` runs the phase itself.
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = ["--values-only", "--value-sizes", f"{SMALL},2K", "--value-workflows", str(W)]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Large values: inline (offload off) and in S3 (offload on)" in printed
    assert "crossover: none found" in printed

    v = json.loads(out.read_text())["values"]
    assert set(v["sizes"]) == {str(SMALL), str(LARGER)}
    assert (v["workflows"], v["steps_per_workflow"]) == (W, S)
    steps = W * S
    assert all(set(row) == {"label", "off", "on"} for row in v["sizes"].values())
    cells = {(int(k), m): row[m] for k, row in v["sizes"].items() for m in ("off", "on")}
    for (_, mode), c in cells.items():
        assert c["possible"] is True and c["steps"] == steps
        assert c["runs_failed"] == 0 and c["meter_errors"] == []
        counts = c["counts"]
        # Each run records its S steps once, and loads its history once: at the
        # claim after the sleep, which replays the steps.
        assert counts["step_records"] == steps
        assert counts["history_loads"] == W
        if mode == "on":
            # Every value is distinct: one PutObject before its record, one
            # GetObject when the replay's claim loads the history.
            assert counts["s3"] == {"PutObject": steps, "GetObject": steps}
            assert c["s3_puts_per_step"] == c["s3_gets_per_step"] == 1.0
        else:
            assert counts["s3"] == {}
            assert c["s3_requests_per_step"] == 0
        # The dollars are the counted units at list prices, nothing else.
        s3 = counts["s3"]
        dollars = (
            counts["run_wru"] * PRICES.dynamodb_wru
            + counts["run_rru"] * PRICES.dynamodb_rru
            + s3.get("PutObject", 0) * PRICES.s3_put_request
            + s3.get("GetObject", 0) * PRICES.s3_get_request
        )
        assert c["dollars_per_million_steps"] == pytest.approx(dollars / steps * 1e6)
        assert c["wru_per_step"] == counts["run_wru"] / steps

    off_small, on_small = cells[SMALL, "off"], cells[SMALL, "on"]
    off_large, on_large = cells[LARGER, "off"], cells[LARGER, "on"]
    # The runs' own capacity at 100 B, every item under 1 KB: per run its start,
    # two claims, S step records, the sleep record, the park and the finish, and
    # three index writes (the start enters by_created, the park enters by_due and
    # the finish leaves it); one strongly consistent history Query under 4 KB.
    for c in (off_small, on_small):
        counts = c["counts"]
        purposes = {k: n for k, n in counts["dynamodb_by_purpose"].items() if k not in BOOKKEEPING}
        assert purposes == {
            "start": W,
            "claim": 2 * W,
            "record step": steps,
            "record sleep": W,
            "park (sleeping)": W,
            "load history": W,
            "finish (completed)": W,
        }
        assert counts["index_writes"] == {"by_created": W, "by_due": 2 * W}
        assert counts["run_wru"] == W * (S + 6) + 3 * W
        assert counts["run_rru"] == W
    # A pointer record is under 1 KB, as a 100-byte value's record is: offloaded,
    # the runs' DynamoDB capacity does not depend on the size, and at 100 B it is
    # what the inline runs use. The difference is the S3 requests, nothing more.
    assert on_small["counts"]["run_wru"] == on_large["counts"]["run_wru"]
    assert on_small["counts"]["run_wru"] == off_small["counts"]["run_wru"]
    assert on_small["counts"]["run_rru"] == off_small["counts"]["run_rru"]
    assert on_small["dollars_per_million_steps"] - off_small["dollars_per_million_steps"] == (
        pytest.approx((PRICES.s3_put_request + PRICES.s3_get_request) * 1e6)
    )
    # Inline, a 2 KB value makes its step record 3 write units instead of 1
    # (2,048 bytes and the record's other attributes, under 3 KB).
    assert off_large["counts"]["run_wru"] - off_small["counts"]["run_wru"] == 2 * steps
    assert off_large["counts"]["run_rru"] > off_small["counts"]["run_rru"]

    # Inline is cheaper at both sizes: no crossover within them.
    assert v["crossover_bytes"] is None and v["crossover_between"] is None
    assert v["inline_premium_at_default_dollars_per_million_steps"] is None
    assert v["default_threshold_bytes"] == 16 * 1024
    # What the worker processes sent (their botocore hooks) is what the meter saw.
    assert v["checks"]["on"]["s3_requests_sent_by_worker"] == {
        "PutObject": 2 * steps,
        "GetObject": 2 * steps,
    }
    assert v["checks"]["off"]["s3_requests_sent_by_worker"] == {}
    assert all(c["s3_hooks_equal_meter"] for c in v["checks"].values())
