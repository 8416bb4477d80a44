"""``GET /v1/openapi.json``: the OpenAPI 3.1 document of this server, shipped in the package.

The file is package data (`relay_http/openapi.json`), kept identical to the repository's
`docs/openapi.json` by a test, and read once when the app is created.
"""

from __future__ import annotations

from importlib.resources import files

import falcon

from .wire import JSON

__all__ = ["OpenApi", "openapi_document"]


def openapi_document() -> bytes:
    """The document's bytes, as shipped."""
    return files("relay_http").joinpath("openapi.json").read_bytes()


class OpenApi:
    """Serves the document."""

    def __init__(self) -> None:
        self._body = openapi_document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = JSON
        resp.data = self._body
