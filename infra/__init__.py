"""CDK deployment of the orchestrator: `Orchestrator` (the whole deployment as one
construct), `OrchestratorStack` (it in a stack, with outputs) and their props
(`ScheduleSpec`: a recurring schedule declared as code).

Needs the `cdk` extra (`pip install -e '.[cdk]'`).
"""

from infra._node import node_notice

node_notice()  # before aws_cdk starts the jsii runtime

from infra.api import ApiAuth, ApiLimits  # noqa: E402
from infra.declared import ScheduleSpec  # noqa: E402
from infra.orchestrator_construct import Orchestrator, Retention  # noqa: E402
from infra.stack import OrchestratorStack  # noqa: E402
from infra.state import TableBilling  # noqa: E402

__all__ = [
    "ApiAuth",
    "ApiLimits",
    "Orchestrator",
    "OrchestratorStack",
    "Retention",
    "ScheduleSpec",
    "TableBilling",
]
