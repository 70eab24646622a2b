"""CDK deployment of the orchestrator: `Orchestrator` (the whole deployment as one
construct), `OrchestratorStack` (it in a stack, with outputs) and their props.

Needs the `cdk` extra (`pip install -e '.[cdk]'`).
"""

from infra.api import ApiAuth, ApiLimits
from infra.orchestrator_construct import Orchestrator, Retention
from infra.stack import OrchestratorStack
from infra.state import TableBilling

__all__ = ["ApiAuth", "ApiLimits", "Orchestrator", "OrchestratorStack", "Retention", "TableBilling"]
