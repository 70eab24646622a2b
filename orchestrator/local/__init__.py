"""The embedded stack: a moto server over HTTP, the resources created from
`orchestrator.resources`, the API on localhost, the scheduler emulator and the
sweeper. Used by `orchestrator dev`, `orchestrator demo` and the tests."""

from .stack import LocalStack

__all__ = ["LocalStack"]
