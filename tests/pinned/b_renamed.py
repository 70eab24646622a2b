from tests.pinned import make

WORKFLOWS = [make("B", first="begin")]  # A's runs would fail at their recorded first step
