"""The API Lambda's entry point. Clients are built on the first request, not at
import, and reused while the execution environment lives."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from ..recurring import parse_event
from .app import build_app
from .callbacks import loggable_path
from .edge import serve
from .service import Service

logger = Logger(service="orchestrator-api")
metrics = Metrics(namespace="Orchestrator", service="orchestrator-api")


@cache
def _service() -> Service:
    from ..aws import client
    from ..clock import SYSTEM_CLOCK
    from ..dispatch import Dispatcher
    from ..payloads import SyncValues
    from ..settings import Settings
    from ..store import Store

    settings = Settings.from_env()
    return Service(
        store=Store(client("dynamodb", settings), settings.table, SYSTEM_CLOCK),
        dispatcher=Dispatcher(client("sqs", settings), settings, client("scheduler", settings)),
        clock=SYSTEM_CLOCK,
        settings=settings,
        values=SyncValues(client("s3", settings), settings.bucket),
    )


app = build_app(_service)


def _adopt_own_arn(context: Any) -> None:
    """Recurring schedules invoke this function: its ARN comes from the invocation
    context (an environment variable holding it would make the function depend on
    itself in CloudFormation)."""
    service = _service()
    arn = getattr(context, "invoked_function_arn", None)
    if not service.settings.recurring_target_arn and isinstance(arn, str) and arn:
        service.settings = service.settings.with_(recurring_target_arn=arn)


def _fire(name: str, tick_ms: int) -> dict[str, Any]:
    decision = _service().schedules.fire(name, tick_ms)
    logger.info("schedule tick", extra={"schedule": name, **decision.as_dict()})
    started = decision.outcome.value == "started"
    metrics.add_metric(
        name="ScheduleRunsStarted" if started else "ScheduleTicksNotStarted",
        unit=MetricUnit.Count,
        value=1,
    )
    return {"schedule": name, **decision.as_dict()}


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Each request, answered or not: one structured log line (route, status,
    run id) and EMF metrics: ApiRequests, ApiClientErrors / ApiServerErrors, RunsStarted,
    SignalsSent, CancelsRequested, CallbacksCompleted. A recurring schedule's
    invocation (not an HTTP event) decides its tick: ScheduleTicks with the outcome."""
    _adopt_own_arn(context)
    tick = parse_event(event)
    if tick is not None:
        return _fire(*tick)
    response = serve(app, event, context)  # never raises: an unexpected error is a 500 JSON answer
    status = int(response.get("statusCode", 500))
    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    path = loggable_path(event.get("rawPath", ""))  # a callback token: its prefix only
    params = event.get("pathParameters") or {}
    logger.info(
        "request",
        extra={
            "method": method,
            "path": path,
            "status": status,
            "workflow_id": params.get("workflow_id"),
        },
    )
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    if 400 <= status < 500:
        metrics.add_metric(name="ApiClientErrors", unit=MetricUnit.Count, value=1)
    elif status >= 500:
        metrics.add_metric(name="ApiServerErrors", unit=MetricUnit.Count, value=1)
    elif method == "POST":
        if path.rstrip("/").endswith("/workflows") and status == 201:
            metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
        elif path.endswith("/signals"):
            metrics.add_metric(name="SignalsSent", unit=MetricUnit.Count, value=1)
        elif path.endswith("/cancel"):
            metrics.add_metric(name="CancelsRequested", unit=MetricUnit.Count, value=1)
        elif path.startswith("/callbacks/") and not path.endswith("/heartbeat"):
            metrics.add_metric(name="CallbacksCompleted", unit=MetricUnit.Count, value=1)
    return response
