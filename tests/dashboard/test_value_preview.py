"""GET /values/{sha256}/preview: the start of a value stored in S3, which the
dashboard shows for a value the API gives only as a link (its CSP lets it fetch
from its own origin, not from S3). No browser needed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from orchestrator.local import LocalStack
from orchestrator.payloads import PREVIEW_BYTES, parse_pointer, pointer_of


def _get(stack: LocalStack, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(stack.api_url + path, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _store(stack: LocalStack, data: bytes) -> str:
    pointer, key = pointer_of(data)
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=data)
    return parse_pointer(pointer)[0]


def test_a_preview_is_the_start_of_the_value_cut_before_a_split_character(
    stack: LocalStack,
) -> None:
    # "é" is two bytes; the limit falls inside the one that straddles it.
    text = "x" * (PREVIEW_BYTES - 11) + "é" * 50_000
    data = json.dumps({"text": text}, ensure_ascii=False).encode()
    digest = _store(stack, data)
    status, body = _get(stack, f"/values/{digest}/preview")
    assert status == 200, body
    assert body["sha256"] == digest and body["bytes"] == len(data)
    assert body["preview_bytes"] == PREVIEW_BYTES - 1  # the split "é" is left out
    assert body["preview"].encode() == data[: PREVIEW_BYTES - 1]


def test_a_small_value_comes_whole(stack: LocalStack) -> None:
    data = b'{"small": true}'
    status, body = _get(stack, f"/values/{_store(stack, data)}/preview")
    assert status == 200 and body["preview"] == data.decode()
    assert body["preview_bytes"] == body["bytes"] == len(data)


def test_an_unknown_or_malformed_digest_is_refused(stack: LocalStack) -> None:
    status, body = _get(stack, f"/values/{'0' * 64}/preview")
    assert status == 404 and "no longer stored" in body["error"]["message"]
    for bad in ("ABC", "0" * 63, "0" * 64 + "0", "../" + "0" * 61):
        status, body = _get(stack, f"/values/{bad}/preview")
        assert status in (400, 404) and "error" in body, bad
    status, body = _get(stack, f"/values/{'g' * 64}/preview")
    assert status == 400 and "SHA-256" in body["error"]["message"]
