"""Deploy 1 of the "shipment" workflow (see tests/versions/__init__.py)."""

from tests.versions import make

WORKFLOWS = [make(1)]
