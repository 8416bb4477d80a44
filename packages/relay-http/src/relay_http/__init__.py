"""relay-http: Relay's node-facing HTTP API.

`create_app` builds the Falcon WSGI app (reads no environment, so vendors can mount it in their
own WSGI stack); `serve` runs it under waitress with the cull loop and a graceful stop.
"""

import logging

from .app import create_app
from .errors import ERROR_TABLE, FingerprintTooLongError, PoolHeaderConflictError
from .serving import ServeError, Server, serve
from .waiting import WaitingFullError, WaitRoom

# A library logs, the application configures: without handlers, stay silent (no lastResort).
logging.getLogger("relay").addHandler(logging.NullHandler())

__all__ = [
    "ERROR_TABLE",
    "FingerprintTooLongError",
    "PoolHeaderConflictError",
    "ServeError",
    "Server",
    "WaitRoom",
    "WaitingFullError",
    "create_app",
    "serve",
]
