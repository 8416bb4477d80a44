"""The distribution's version, read once from its metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("relay-client")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"
