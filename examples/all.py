"""Every example workflow, for `orchestrator worker examples.all`."""

from .approval import approval
from .greet import greet
from .reminder import reminder

WORKFLOWS = [greet, reminder, approval]
