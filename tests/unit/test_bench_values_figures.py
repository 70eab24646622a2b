"""The large-value phase's arithmetic and the meter's S3 operation names, without
AWS: sizes, the crossover, sizes that cannot stay inline."""

from __future__ import annotations

import pytest

from benchmarks.meter_s3 import s3_operation, signing_service
from benchmarks.values import ValuesConfig, crossover, figures, parse_sizes, size_label

KB = 1024


def test_sizes_parse_with_binary_suffixes() -> None:
    assert parse_sizes("1M, 100,8k,16K,100") == (100, 8 * KB, 16 * KB, KB * KB)
    assert [size_label(n) for n in (100, KB, 64 * KB, KB * KB, 1536)] == [
        "100 B",
        "1 KB",
        "64 KB",
        "1 MB",
        "1.5 KB",
    ]
    for bad in ("", "10", "1G", "x"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_crossover_is_interpolated_between_the_bracketing_sizes() -> None:
    sizes = [100, 8 * KB, 16 * KB, 64 * KB]
    off = {100: 2.0, 8 * KB: 7.0, 16 * KB: 12.0}  # no 64 KB inline
    on = {s: 7.5 for s in sizes}
    at, between, _ = crossover(sizes, off, on)
    assert between == [8 * KB, 16 * KB]
    assert at == pytest.approx(8 * KB + 8 * KB * 0.5 / 5.0)
    # Inline cheaper everywhere measured in both modes, or offloaded cheaper at once.
    assert crossover(sizes, {100: 1.0}, on)[:2] == (None, None)
    assert crossover(sizes, {100: 9.0}, on)[:2] == (None, None)
    assert "already" in crossover(sizes, {100: 9.0}, on)[2]


def test_sizes_above_the_inline_limit_are_not_possible_without_a_bucket() -> None:
    config = ValuesConfig(sizes=(KB, 256 * KB))
    measured = {"dollars_per_million_steps": 1.0, "possible": True}
    v = figures(config, {"off": {KB: measured}, "on": {KB: measured, 256 * KB: measured}}, {})
    off = v["sizes"][str(256 * KB)]["off"]
    assert off["possible"] is False and "204800 B" in off["reason"]
    assert v["sizes"][str(KB)]["off"] is measured
    assert v["crossover_bytes"] is None


def test_s3_requests_are_named_by_method_path_and_query() -> None:
    def env(method: str, path: str, query: str = "", **headers: str) -> dict[str, str]:
        auth = "AWS4-HMAC-SHA256 Credential=testing/20261126/us-east-1/s3/aws4_request, X=y"
        return {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "HTTP_AUTHORIZATION": auth,
            **headers,
        }

    key = "/orchestrator-values/values/sha256/ab12"
    assert s3_operation(env("PUT", key)) == "PutObject"
    assert s3_operation(env("GET", key)) == "GetObject"
    assert s3_operation(env("HEAD", key)) == "HeadObject"
    assert s3_operation(env("PUT", key, HTTP_X_AMZ_COPY_SOURCE="/b/k")) == "CopyObject"
    assert s3_operation(env("PUT", "/orchestrator-values")) == "CreateBucket"
    assert s3_operation(env("PUT", "/orchestrator-values", "lifecycle=")) == (
        "PutBucketLifecycleConfiguration"
    )
    assert s3_operation(env("GET", "/orchestrator-values", "list-type=2")) == "ListObjectsV2"
    assert signing_service(env("GET", key)) == "s3"
    presigned = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=testing%2F20261126%2Fus-east-1%2Fs3%2Faws4_request"
    )
    assert signing_service({"QUERY_STRING": presigned}) == "s3"
    scheduler = "AWS4-HMAC-SHA256 Credential=testing/20261126/us-east-1/scheduler/aws4_request"
    assert signing_service({"HTTP_AUTHORIZATION": scheduler}) == "scheduler"
    assert signing_service({}) is None
