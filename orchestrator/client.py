"""`Client`: start, get, list, steps and signal runs through the HTTP API.

    client = Client("http://127.0.0.1:8000")            # or Client() with ORCHESTRATOR_API_URL
    run = client.start("greet", {"name": "World"}, id="greet-1")
    run = client.wait(run["id"])                         # poll until terminal

With `auth="iam"` (or ORCHESTRATOR_API_AUTH=iam) requests are signed with
SigV4 for API Gateway's IAM authorization, using the standard AWS credential
chain. Errors come back as the project's typed exceptions.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from . import resources as r
from .errors import (
    BadInputError,
    OrchestratorError,
    RetryableError,
    error_class,
)
from .model import MAX_PAGE_ITEMS, op_sort_key
from .step_order import display_order

TERMINAL = {"completed", "failed", "cancelled"}
# How long `bulk` and `backfill_schedule` wait for a job the API did not end
# within the request (deployed, the sweeper goes on with it once a minute).
JOB_WAIT_S = 900.0


class Client:
    def __init__(
        self, api_url: str | None = None, *, auth: str | None = None, timeout: float = 30.0
    ) -> None:
        url = api_url or os.environ.get(r.ENV_API_URL)
        if not url:
            raise BadInputError(
                f"no API URL: pass one, or set {r.ENV_API_URL} (printed by `orchestrator dev`, "
                "or the ApiUrl output of the deployed stack)"
            )
        self._url = url.rstrip("/")
        self._auth = (auth or os.environ.get(r.ENV_API_AUTH) or "none").lower()
        if self._auth not in ("none", "iam"):
            raise BadInputError(f"auth must be 'none' or 'iam', not {self._auth!r}")
        self._timeout = timeout

    # --- API ---------------------------------------------------------------------------
    def start(
        self,
        name: str,
        input: Any = None,
        *,
        id: str | None = None,
        execution_timeout: float | None = None,
        tags: dict[str, str] | None = None,
        task_queue: str | None = None,
    ) -> dict[str, Any]:
        """Start a run. `id` makes the start idempotent; `execution_timeout`
        (seconds) fails the run as timed out when exceeded; `tags` (up to 10
        custom fields) let `list(tag="key=value")` find the run; `task_queue`
        routes it to the workers of that task queue (a queue the deployment
        lacks: 400)."""
        body: dict[str, Any] = {"name": name, "input": input}
        if tags:
            body["tags"] = tags
        if id is not None:
            body["id"] = id
        if task_queue is not None:
            body["task_queue"] = task_queue
        if execution_timeout is not None:
            body["execution_timeout_seconds"] = execution_timeout
        return self._call("POST", "/workflows", body)

    def cancel(self, workflow_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """Cancel a run. The reply's "outcome" says what happened: "cancelled",
        "requested" (a running run is cancelled at its next durable call),
        "already_requested", or "already_<status>" for a finished run."""
        body = {"reason": reason} if reason else {}
        return self._call("POST", f"/workflows/{_quote(workflow_id)}/cancel", body)

    def redrive(self, workflow_id: str) -> dict[str, Any]:
        """Put a failed, timed-out or cancelled run back to pending under its id:
        recorded successes replay, failed operations run again. ConflictError
        (409) for a running or completed run."""
        return self._call("POST", f"/workflows/{_quote(workflow_id)}/redrive", {})

    def migrate(
        self, workflow_id: str, *, to_build: str, attempt: int | None = None
    ) -> dict[str, Any]:
        """Move a pinned run to the build `to_build` (its workers run it from now
        on). `attempt`: the attempt you replay-checked; ConflictError (409) if the
        run moved on since, if a worker holds it with a live lease, or if no queue
        of that build exists. The reply's `outcome`: "migrated" or "already_there".
        `orchestrator migrate` runs the replay check first."""
        body: dict[str, Any] = {"to_build": to_build}
        if attempt is not None:
            body["attempt"] = attempt
        return self._call("POST", f"/workflows/{_quote(workflow_id)}/migrate", body)

    _KEEP = object()

    def fork(
        self,
        workflow_id: str,
        *,
        from_operation: str,
        input: Any = _KEEP,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Start a new run with the records of `workflow_id` before `from_operation`
        (an operation id from `steps`), with its input unless `input` is given."""
        body: dict[str, Any] = {"from_operation": from_operation}
        if input is not Client._KEEP:
            body["input"] = input
        if id is not None:
            body["id"] = id
        return self._call("POST", f"/workflows/{_quote(workflow_id)}/fork", body)

    def get(self, workflow_id: str, *, follow_links: bool = True) -> dict[str, Any]:
        """The run. An output (or a worker-written input) stored in S3 above the
        API's inline size comes as `output_link` (`input_link`), a time-limited
        URL; with `follow_links` it is fetched into `output` (`input`)."""
        run = self._call("GET", f"/workflows/{_quote(workflow_id)}")
        return _followed(_followed(run, "output"), "input") if follow_links else run

    def steps(self, workflow_id: str, *, follow_links: bool = True) -> list[dict[str, Any]]:
        """Every durable operation of the run, from every page of its steps, in
        the order the code created them (`orchestrator.step_order`)."""
        pages = self._pages(f"/workflows/{_quote(workflow_id)}/steps")
        steps = display_order([s for page in pages for s in page["steps"]])
        return [_followed(s, "result") if follow_links else s for s in steps]

    def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        parent_id: str | None = None,
        tag: str | None = None,
        build_id: str | None = None,
    ) -> dict[str, Any]:
        """Runs newest first, a page at a time: by status, name and build id, or by
        one tag ("key=value", alone); with `parent_id`, that run's children
        (ctx.invoke, distributed map), in start order. The reply's `next_cursor`
        (also `next`) is the `cursor` of the following page, None after the last."""
        if parent_id is not None:
            args = {"parent_id": parent_id, "limit": str(limit), "cursor": cursor}
            qs = urllib.parse.urlencode({k: v for k, v in args.items() if v is not None})
            return self._call("GET", f"/workflows?{qs}")
        params = {
            "status": status,
            "name": name,
            "limit": str(limit),
            "cursor": cursor,
            "tag": tag,
            "build_id": build_id,
        }
        qs = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._call("GET", f"/workflows?{qs}")

    def signal(self, workflow_id: str, name: str, payload: Any = None) -> dict[str, Any]:
        return self._call(
            "POST", f"/workflows/{_quote(workflow_id)}/signals", {"name": name, "payload": payload}
        )

    def terminate(self, workflow_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """End a run now, with no cleanup (cancel lets a running run clean up).
        The reply's "outcome" is "terminated" or "already_<status>"."""
        body = {"reason": reason} if reason else {}
        return self._call("POST", f"/workflows/{_quote(workflow_id)}/terminate", body)

    def history(self, workflow_id: str) -> dict[str, Any]:
        """The run's full history as JSON, from every page of it: the run, its
        steps (by operation id), every signal (by arrival)."""
        pages = list(self._pages(f"/workflows/{_quote(workflow_id)}/history"))
        steps = [s for page in pages for s in page["steps"]]
        signals = [s for page in pages for s in page["signals"]]
        return {
            "format": pages[0]["format"],
            "workflow": pages[0]["workflow"],
            "steps": sorted(steps, key=lambda s: op_sort_key(s["id"])),
            "signals": sorted(signals, key=lambda s: s["seq"]),
        }

    def bulk(
        self,
        action: str,
        *,
        name: str | None = None,
        status: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        dry_run: bool = True,
        confirm_count: int | None = None,
        reason: str | None = None,
        wait: float | None = JOB_WAIT_S,
    ) -> dict[str, Any]:
        """Cancel or terminate ("cancel" / "terminate") the unfinished runs a filter
        matches, or "redrive" every run it matches (times in ISO 8601). A dry run
        counts them; to act, pass dry_run=False and confirm_count=<that count>.
        The reply then holds "outcomes" (a count per outcome) and "results": one
        {"id", "outcome", "reason"?} per run, the first 1,000 (a redrive's outcome
        is "redriven", or "refused" with the reason for a run that is not failed,
        timed out or cancelled).

        It is a job (`job_id`): one the API did not end within the request is
        waited for here, up to `wait` seconds (None: not at all; the reply's
        "status" is then "running", and `job()` / `wait_job()` follow it)."""
        body = {
            k: v
            for k, v in {
                "name": name,
                "status": status,
                "created_after": created_after,
                "created_before": created_before,
                "confirm_count": confirm_count,
                "reason": reason,
            }.items()
            if v is not None
        }
        reply = self._call("POST", f"/bulk/{_quote(action)}", {**body, "dry_run": dry_run})
        return self.finish_job(reply, wait)

    # --- jobs (bulk operations, backfills) -------------------------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        """A job: status ("running", "completed", "refused", "failed", "cancelled"),
        phase, progress and, once ended, its result."""
        return dict(self._call("GET", f"/jobs/{_quote(job_id)}"))

    def jobs(self, *, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of jobs, newest first: {"jobs": [...], "cursor": next or None}."""
        q = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        return dict(self._call("GET", "/jobs?" + urllib.parse.urlencode(q)))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Stop a running job after its current page; "outcome" says whether it had ended."""
        return dict(self._call("POST", f"/jobs/{_quote(job_id)}/cancel", {}))

    def wait_job(
        self, job_id: str, *, timeout: float = JOB_WAIT_S, poll: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the job has ended; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] != "running":
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still running after {timeout}s")
            time.sleep(poll)

    def finish_job(self, reply: Any, wait: float | None = JOB_WAIT_S) -> dict[str, Any]:
        """A job route's reply; one still running is waited for (up to `wait`
        seconds) and answered as the route would have, a refusal as its error."""
        reply = dict(reply)
        if reply.get("status") != "running" or wait is None:
            return reply
        job = self.wait_job(reply["job_id"], timeout=wait)
        if job["status"] == "refused":
            code = 400 if job.get("refusal") == "limit" else 409
            raise error_class(code)(job.get("message", "the job was refused"))
        head = {k: v for k, v in reply.items() if k not in ("job", "status")}
        out = {**head, **job["result"], "job_id": job["id"], "status": job["status"]}
        if "message" in job:
            out["message"] = job["message"]
        return out

    def inbox(self, workflow_id: str) -> builtins.list[dict[str, Any]]:
        """The run's buffered signals (not yet consumed by a wait), oldest first,
        from every page: name, seq, payload, sent_at."""
        pages = self._pages(f"/workflows/{_quote(workflow_id)}/signals")
        return sorted((s for page in pages for s in page["signals"]), key=lambda s: s["seq"])

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        """Every page of a paged collection of the API, following `next`, the
        largest pages the API gives (each is also bounded by bytes)."""
        cursor: str | None = None
        while True:
            args = {"limit": str(MAX_PAGE_ITEMS), **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", f"{path}?{urllib.parse.urlencode(args)}")
            yield page
            cursor = page.get("next")
            if not cursor:
                return

    def callback_succeed(self, callback_id: str, result: Any = None) -> dict[str, Any]:
        """Complete a callback with a result (an outside system's answer)."""
        return self._call("POST", f"/callbacks/{_quote(callback_id)}/succeed", {"result": result})

    def callback_fail(self, callback_id: str, error_type: str, message: str = "") -> dict[str, Any]:
        """Complete a callback with a failure: the workflow gets CallbackFailedError."""
        body = {"error": {"type": error_type, "message": message}}
        return self._call("POST", f"/callbacks/{_quote(callback_id)}/fail", body)

    def callback_heartbeat(self, callback_id: str) -> dict[str, Any]:
        """Tell a callback with a heartbeat timeout that the work goes on."""
        return self._call("POST", f"/callbacks/{_quote(callback_id)}/heartbeat", {})

    def workers(self, *, include_stopped: bool = False) -> builtins.list[dict[str, Any]]:
        """Registered workers: id, host, the workflow names they serve,
        concurrency, busy slots, last seen, and whether they are live."""
        suffix = "?all=true" if include_stopped else ""
        return list(self._call("GET", f"/workers{suffix}")["workers"])

    # --- task queues -----------------------------------------------------------------
    def queues(self) -> builtins.list[dict[str, Any]]:
        """Each task queue: depth, runs in flight, its flow-control limits, and how
        long the oldest run refused a slot has waited (`oldest_wait_seconds`)."""
        return list(self._call("GET", "/queues")["queues"])

    def set_queue_limits(
        self,
        name: str,
        *,
        max_concurrency: int | None = None,
        rate_limit: int | None = None,
        rate_period: float | None = None,
    ) -> dict[str, Any]:
        """Set a task queue's flow control (a limit left None is removed): at most
        `max_concurrency` runs hold a lease, at most `rate_limit` claims per
        `rate_period` seconds (default 1), across every worker."""
        body = {
            "max_concurrency": max_concurrency,
            "rate_limit": rate_limit,
            "rate_period_seconds": rate_period,
        }
        return self._call("POST", f"/queues/{_quote(name)}", body)

    # --- schedules -------------------------------------------------------------------
    def create_schedule(
        self,
        name: str,
        workflow: str,
        input: Any = None,
        *,
        expression: str,
        timezone: str | None = None,
        overlap: str | None = None,
        catchup_window: float | None = None,
        task_queue: str | None = None,
    ) -> dict[str, Any]:
        """Create a recurring schedule: `expression` is "cron(0 2 * * ? *)" or
        "rate(5 minutes)", evaluated in `timezone` (IANA, default UTC); `overlap`
        is "skip" (default), "buffer_one" or "allow_all"; `catchup_window`
        (seconds) is how late a tick may still start its run."""
        body: dict[str, Any] = {
            "name": name,
            "workflow": workflow,
            "input": input,
            "expression": expression,
        }
        optional = {
            "timezone": timezone,
            "overlap": overlap,
            "catchup_window_seconds": None if catchup_window is None else int(catchup_window),
            "task_queue": task_queue,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._call("POST", "/schedules", body)

    def schedules(self) -> builtins.list[dict[str, Any]]:
        """Every schedule with its next fire times and latest decisions."""
        return list(self._call("GET", "/schedules")["schedules"])

    def schedule(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/schedules/{_quote(name)}")

    def pause_schedule(self, name: str, *, note: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/schedules/{_quote(name)}/pause", _note(note))

    def resume_schedule(self, name: str, *, note: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/schedules/{_quote(name)}/resume", _note(note))

    def trigger_schedule(self, name: str) -> dict[str, Any]:
        """Start a run now; the reply's "outcome" is "started" or why not."""
        return self._call("POST", f"/schedules/{_quote(name)}/trigger", {})

    def backfill_schedule(
        self, name: str, start: str, end: str, *, wait: float | None = JOB_WAIT_S
    ) -> dict[str, Any]:
        """Start every tick's run in [start, end] (ISO 8601) that has none: the
        reply's "ticks", "started" and "skipped" (run ids, the first 1,000 of each).
        A job, waited for as `bulk` says."""
        reply = self._call(
            "POST", f"/schedules/{_quote(name)}/backfill", {"start": start, "end": end}
        )
        return self.finish_job(reply, wait)

    def delete_schedule(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/schedules/{_quote(name)}")

    def wait(self, workflow_id: str, *, timeout: float = 60.0, poll: float = 0.1) -> dict[str, Any]:
        """Poll until the run is terminal; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(workflow_id)
            if run["status"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {workflow_id} is still {run['status']} after {timeout}s")
            time.sleep(poll)

    # --- transport ---------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            data = None if body is None else json.dumps(body, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise BadInputError(f"the request body is not JSON-serializable: {e}") from None
        url = self._url + path
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._auth == "iam":
            headers = _sign(method, url, data, headers)
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            code = None
            try:
                err = json.loads(raw)["error"]
                message, code = err["message"], err.get("code")
            except (ValueError, KeyError, TypeError, AttributeError):
                message = raw.decode(errors="replace") or e.reason
            raise error_class(e.code, code if isinstance(code, str) else None)(message) from None
        except urllib.error.URLError as e:
            raise RetryableError(f"cannot reach the API at {self._url}: {e.reason}") from None


def _note(note: str | None) -> dict[str, Any]:
    return {} if note is None else {"note": note}


def _quote(workflow_id: str) -> str:
    return urllib.parse.quote(workflow_id, safe="")


def _sign(method: str, url: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.session.Session()
    creds = session.get_credentials()
    if creds is None:
        raise BadInputError(
            "auth='iam' needs AWS credentials (the standard credential chain found none)"
        )
    region = session.region_name or os.environ.get("AWS_REGION") or r.DEFAULT_REGION
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(creds.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def _followed(view: dict[str, Any], key: str) -> dict[str, Any]:
    """`view` with the value behind its `<key>_link` (a presigned S3 GET) read into
    `key`, its bytes checked against the link's SHA-256. A link S3 refuses leaves
    `key` None and the link marked `unavailable` (as the API marks a value it
    cannot read)."""
    link = view.get(f"{key}_link")
    if not link or not link.get("url"):
        return view
    try:
        with urllib.request.urlopen(link["url"], timeout=300) as resp:
            data = resp.read()
    except urllib.error.HTTPError as e:
        # S3 refused the link (404: the object expired): the view stays, marked.
        why = f"the value cannot be read from its link (S3 answered {e.code} {e.reason})"
        return {**view, f"{key}_link": {**link, "unavailable": why}}
    if hashlib.sha256(data).hexdigest() != link.get("sha256"):
        raise OrchestratorError(f"the value behind {key}_link does not match its digest")
    return {**view, key: json.loads(data)}
