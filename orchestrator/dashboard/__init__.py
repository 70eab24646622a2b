"""The operators' dashboard: a static page (HTML, a few scripts, one stylesheet)
that reads the JSON API with relative URLs, so it works wherever the API is
mounted (localhost, an API Gateway stage, behind the `/api` prefix).

No build step and no third-party code: the files are served as they are.
"""

from __future__ import annotations

from importlib import resources

# The files served under /dashboard/, by name, with their content types. Only
# these names are served: the route never turns a request path into a file path.
_JS = "text/javascript; charset=utf-8"
ASSETS: dict[str, str] = {
    "kit.js": _JS,
    "values.js": _JS,
    "timeline.js": _JS,
    "list.js": _JS,
    "run.js": _JS,
    "schedules.js": _JS,
    "jobs.js": _JS,
    "workers.js": _JS,
    "app.js": _JS,
    "style.css": "text/css; charset=utf-8",
}


def page() -> str:
    """The dashboard's HTML, served at the API's root."""
    return _read("index.html")


def asset(name: str) -> tuple[str, str] | None:
    """(content type, text) of a dashboard file, or None if there is no such file."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return content_type, _read(name)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


__all__ = ["ASSETS", "asset", "page"]
