from tests.pinned import make

WORKFLOWS = [make("B")]  # the same operations as build A: A's runs replay on it
