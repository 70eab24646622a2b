"""The API Lambda's entry point. Clients are built on the first request, not at
import, and reused while the execution environment lives."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from .app import build_app
from .service import Service

logger = Logger(service="orchestrator-api")


@cache
def _service() -> Service:
    import boto3

    from ..clock import SYSTEM_CLOCK
    from ..dispatch import Dispatcher
    from ..settings import Settings
    from ..store import Store

    settings = Settings.from_env()
    session = boto3.session.Session()
    return Service(
        store=Store(session.client("dynamodb"), settings.table, SYSTEM_CLOCK),
        dispatcher=Dispatcher(session.client("sqs"), settings, session.client("scheduler")),
        clock=SYSTEM_CLOCK,
        settings=settings,
    )


app = build_app(_service)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
