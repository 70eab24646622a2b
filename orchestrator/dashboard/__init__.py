"""The operators' dashboard: one static HTML page that reads the JSON API."""

from __future__ import annotations

from importlib import resources


def page() -> str:
    return resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")
