"""The worker SDK.

from worker import Worker, workflow

@workflow("greet")
async def greet(ctx, input: GreetInput) -> GreetOutput:
    greeting = await ctx.step("greeting", make_greeting, input.name)
    return GreetOutput(greeting=greeting)

async with Worker(workflows=[greet], max_concurrent_workflows=4) as w:
    await w.run_until_stopped()
"""

from orchestrator.errors import (
    CallbackFailedError,
    CallbackTimeoutError,
    ChildContextError,
    ChildWorkflowError,
    ConditionNotMetError,
    ExecutionTimeoutError,
    NonDeterminismError,
    NonRetryableError,
    StepFailedError,
    StepInterruptedError,
    StepTimeoutError,
    WorkflowCancelledError,
    WorkflowContextError,
)

from ._context import WorkflowContext
from ._logs import configure_logging
from ._registry import WorkflowDefinition, definition_of, is_workflow, workflow
from ._replay import check as replay_check
from ._retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy
from ._worker import Worker
from .operations.batch import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
    BatchSerializer,
    CompletionConfig,
    CompletionReason,
)
from .operations.callback import Callback
from .operations.condition import backoff_until
from .operations.s3_map import S3BatchResult, S3Items
from .operations.step import AT_LEAST_ONCE_PER_RETRY, AT_MOST_ONCE_PER_RETRY, StepSemantics
from .plugins import Attempt, Invocation, Operation, Plugin

__all__ = [
    "AT_LEAST_ONCE_PER_RETRY",
    "AT_MOST_ONCE_PER_RETRY",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "Attempt",
    "BatchItem",
    "BatchItemStatus",
    "BatchResult",
    "BatchSerializer",
    "Callback",
    "CallbackFailedError",
    "CallbackTimeoutError",
    "ChildContextError",
    "ChildWorkflowError",
    "CompletionConfig",
    "CompletionReason",
    "ConditionNotMetError",
    "ExecutionTimeoutError",
    "Invocation",
    "NonDeterminismError",
    "NonRetryableError",
    "Operation",
    "Plugin",
    "RetryPolicy",
    "S3BatchResult",
    "S3Items",
    "StepFailedError",
    "StepInterruptedError",
    "StepSemantics",
    "StepTimeoutError",
    "Worker",
    "WorkflowCancelledError",
    "WorkflowContext",
    "WorkflowContextError",
    "WorkflowDefinition",
    "backoff_until",
    "configure_logging",
    "definition_of",
    "is_workflow",
    "replay_check",
    "workflow",
]
