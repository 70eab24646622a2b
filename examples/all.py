"""Every example workflow, for `orchestrator worker examples.all`."""

from .approval import approval
from .greet import greet
from .order import order
from .reminder import reminder

WORKFLOWS = [greet, reminder, approval, order]
