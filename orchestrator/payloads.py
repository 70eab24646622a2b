"""Large values in S3 (the claim check): the one codec between a value's JSON text
and what a record stores.

A value whose JSON text is at most the offload threshold is stored as it is. A
larger one is written to S3 as one object keyed by the SHA-256 of its bytes
(`values/sha256/<hex>`), and the record stores a pointer, `@s3:sha256:<hex>:<size>`.
No JSON text starts with `@`, so a stored text is a pointer exactly when it has
that prefix, and a pointer that reaches a JSON parser unresolved fails loudly
instead of being read as a value.

Guarantees:

- The object is written before the record that points at it: `put` returns the
  pointer only once S3 has acknowledged the object, and the caller writes the
  record after. A crash in between leaves an orphan object, which is harmless and
  expires by the bucket's lifecycle; a pointer to an object never written cannot
  exist.
- Identical values are one object (same bytes, same key). Each write of a value
  PUTs it again, which refreshes the object's age, so the lifecycle counts from the
  last record that pointed at it.
- A read checks the bytes against the digest in the pointer.

Standard library plus botocore's error type; the S3 clients are injected.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import re
from typing import Any

from botocore.exceptions import ClientError

from . import resources as r
from .errors import OrchestratorError, PayloadTooLargeError
from .model import MAX_INPUT_BYTES, MAX_VALUE_BYTES

POINTER_PREFIX = "@s3:sha256:"
_POINTER_RE = re.compile(r"^@s3:sha256:([0-9a-f]{64}):([0-9]{1,12})\Z")
# The API inlines an offloaded value up to this size in a GET; above it, it returns
# a time-limited link (a presigned GET) instead of the value.
MAX_INLINE_READ_BYTES = 1024 * 1024
LINK_SECONDS = 15 * 60
# GET /values/{sha256}/preview returns at most this much of a value: what a page
# (the dashboard) shows of a value too large to read whole.
PREVIEW_BYTES = 64 * 1024
DIGEST_RE = re.compile(r"^[0-9a-f]{64}\Z")


class ValueUnavailableError(OrchestratorError):
    """An offloaded value could not be read back: its object is missing (expired
    by the lifecycle) or its bytes do not match the pointer's digest."""


def is_pointer(text: str | None) -> bool:
    return text is not None and text.startswith(POINTER_PREFIX)


def parse_pointer(text: str) -> tuple[str, int]:
    """(hex digest, size in bytes) of a pointer; ValueError if `text` is not one."""
    m = _POINTER_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a value pointer: {text[:80]!r}")
    return m.group(1), int(m.group(2))


def pointer_of(data: bytes) -> tuple[str, str]:
    """(pointer, object key) of a value's bytes."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{POINTER_PREFIX}{digest}:{len(data)}", object_key(digest)


def object_key(digest: str) -> str:
    return f"{r.VALUE_KEY_PREFIX}{digest}"


def _checked(data: bytes, digest: str) -> str:
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueUnavailableError(f"value {digest[:12]}… does not match its digest")
    return data.decode()


def _missing(e: ClientError, digest: str) -> ValueUnavailableError | None:
    if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
        return ValueUnavailableError(f"value {digest[:12]}… is no longer stored (expired)")
    return None


def _put_args(bucket: str, key: str, data: bytes) -> dict[str, Any]:
    return {
        "Bucket": bucket,
        "Key": key,
        "Body": data,
        "ContentType": "application/json",
        # S3 checks the body against this before it stores the object.
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }


class AsyncValues:
    """The worker's codec (an aioboto3 S3 client). With no client (`s3=None`),
    nothing is offloaded and a value above `MAX_INLINE_BYTES` is refused."""

    def __init__(self, s3: Any, bucket: str, threshold: int) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.threshold = min(threshold, r.MAX_INLINE_BYTES)

    @property
    def client(self) -> Any:
        """The S3 client (None: no value bucket)."""
        return self._s3

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def max_bytes(self) -> int:
        """The largest value this codec stores: anything up to the worker's limit
        with a bucket, only what fits in an item without one."""
        return MAX_VALUE_BYTES if self._s3 is not None else r.MAX_INLINE_BYTES

    @property
    def max_input_bytes(self) -> int:
        """The largest input a worker gives a run (a child's, a next generation's):
        anything up to the worker's limit with a bucket; without one, the API's
        input limit, so that a run item's input and output together fit."""
        return MAX_VALUE_BYTES if self._s3 is not None else MAX_INPUT_BYTES

    async def put(
        self, text: str | None, *, what: str = "value", inline_max: int = r.MAX_INLINE_BYTES
    ) -> str | None:
        """What to store for `text`: `text` itself, or the pointer to its object
        (written first). A pointer given is returned as it is. Above `inline_max`
        a value is offloaded whatever the threshold, or refused without a bucket."""
        threshold = min(self.threshold, inline_max)
        if text is None or is_pointer(text) or len(text) * 4 <= threshold:
            return text  # (a character is at most 4 bytes in UTF-8)
        data = text.encode()
        if len(data) <= threshold:
            return text
        if self._s3 is None:
            if len(data) <= inline_max:
                return text
            raise PayloadTooLargeError(
                f"{what} is {len(data)} bytes; without a value bucket the limit is "
                f"{inline_max} bytes"
            )
        pointer, key = pointer_of(data)
        await self._s3.put_object(**_put_args(self._bucket, key, data))
        return pointer

    async def get(self, text: str | None) -> str | None:
        """The JSON text a stored text stands for."""
        if not is_pointer(text):
            return text
        assert text is not None
        digest, _ = parse_pointer(text)
        if self._s3 is None:
            raise ValueUnavailableError("an offloaded value, and no value bucket configured")
        try:
            resp = await self._s3.get_object(Bucket=self._bucket, Key=object_key(digest))
            async with resp["Body"] as body:
                data = await body.read()
        except ClientError as e:
            raise (_missing(e, digest) or e) from e
        return _checked(data, digest)


class SyncValues:
    """The API's and the CLI's reader (a boto3 S3 client)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def get(self, text: str | None) -> str | None:
        if not is_pointer(text):
            return text
        assert text is not None
        digest, _ = parse_pointer(text)
        try:
            resp = self._s3.get_object(Bucket=self._bucket, Key=object_key(digest))
            data = resp["Body"].read()
        except ClientError as e:
            raise (_missing(e, digest) or e) from e
        return _checked(data, digest)

    def preview(self, digest: str, limit: int = PREVIEW_BYTES) -> tuple[str, int]:
        """(the first `limit` bytes of a stored value as text, the value's size in
        bytes), read with a ranged GET. The text stops before a character the limit
        would split. A preview is not checked against the digest (only whole values
        are)."""
        try:
            resp = self._s3.get_object(
                Bucket=self._bucket, Key=object_key(digest), Range=f"bytes=0-{limit - 1}"
            )
            data = resp["Body"].read(limit)
        except ClientError as e:
            raise (_missing(e, digest) or e) from e
        # "bytes 0-65535/2350766"; absent when the object was sent whole.
        total = str(resp.get("ContentRange") or "").rpartition("/")[2]
        size = int(total) if total.isdigit() else len(data)
        return codecs.getincrementaldecoder("utf-8")("replace").decode(data[:limit]), size

    def link(self, text: str, *, seconds: int = LINK_SECONDS) -> dict[str, Any]:
        """A time-limited link to an offloaded value: a presigned GET."""
        digest, size = parse_pointer(text)
        url = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": object_key(digest)},
            ExpiresIn=seconds,
        )
        return {"url": url, "bytes": size, "sha256": digest, "expires_in": seconds}

    def view(self, text: str | None) -> tuple[str | None, dict[str, Any] | None]:
        """(JSON text, None) for a value the API returns inline, or (None, link)
        for an offloaded one above `MAX_INLINE_READ_BYTES`."""
        if not is_pointer(text):
            return text, None
        assert text is not None
        _, size = parse_pointer(text)
        if size > MAX_INLINE_READ_BYTES:
            return None, self.link(text)
        return self.get(text), None
