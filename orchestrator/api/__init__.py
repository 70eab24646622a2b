"""The HTTP API: the same resolver runs in Lambda behind API Gateway and, through
`orchestrator.local.http`, on localhost in the embedded stack."""
