from tests.pinned import make

WORKFLOWS = [make("A")]
