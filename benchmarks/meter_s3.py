"""The metering server's names for S3 requests.

An S3 request carries no ``X-Amz-Target``: its operation is in the method, the
path and the query. The metering server tells S3 apart from the other REST API
it serves (EventBridge Scheduler) by the service in the request's SigV4
credential scope: the ``Authorization`` header, or ``X-Amz-Credential`` in the
query of a presigned URL. Requests are path-style (``/bucket/key``), as botocore
sends them to an endpoint given by IP address, which is how the benchmark's
clients reach the server.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, unquote

_HEADER_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/")
_QUERY_SCOPE = re.compile(r"X-Amz-Credential=[^/]+/\d{8}/[^/]+/([^/]+)/")

# Bucket subresources whose request is named Put/Get/Delete + Bucket + the name.
_SUBRESOURCES = {
    "lifecycle": "LifecycleConfiguration",
    "policy": "Policy",
    "versioning": "Versioning",
    "encryption": "Encryption",
    "publicAccessBlock": "PublicAccessBlock",
    "cors": "Cors",
    "tagging": "Tagging",
    "acl": "Acl",
    "notification": "NotificationConfiguration",
    "ownershipControls": "OwnershipControls",
    "location": "Location",
    "logging": "Logging",
}
_VERB = {"PUT": "Put", "GET": "Get", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}


def signing_service(environ: dict[str, Any]) -> str | None:
    """The service a request was signed for ("s3", "scheduler"), if it is signed."""
    m = _HEADER_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if m is None:
        m = _QUERY_SCOPE.search(unquote(environ.get("QUERY_STRING", "")))
    return m.group(1) if m else None


def s3_operation(environ: dict[str, Any]) -> str:
    """The S3 operation of a path-style request ("PutObject", "GetObject", ...)."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    path = str(environ.get("PATH_INFO", "/"))
    params = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets"
    if key:
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return {
                "PUT": "UploadPart",
                "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload",
            }.get(method, "ListParts")
        if method == "PUT" and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
            return "CopyObject"
        if "tagging" in params:
            return f"{_VERB.get(method, method)}ObjectTagging"
        return f"{_VERB.get(method, method)}Object"
    for name, suffix in _SUBRESOURCES.items():
        if name in params:
            return f"{_VERB.get(method, method)}Bucket{suffix}"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    if method == "GET":
        return "ListObjectsV2" if params.get("list-type") == ["2"] else "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
        method, f"{_VERB.get(method, method)}Bucket"
    )
