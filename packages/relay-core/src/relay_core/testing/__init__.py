"""The test kit shipped with relay-core, for adapter authors and vendors.

- `MemoryStore`: the reference store (and the test double of choice: a fake, not a mock);
- `FrozenClock`: a settable, advanceable clock;
- `LicenseWriter` and `tamper`: valid and broken Keygen files signed by a test key;
- `StorageContract`: the pytest suite every storage adapter must pass (needs the ``testing``
  extra: pytest and hypothesis), and `strategies`: hypothesis strategies for Relay's inputs.

`StorageContract` and `strategies` are imported on first use, so importing this package does not
require pytest or hypothesis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .clock import FrozenClock
from .keygen_writer import LicenseWriter, tamper
from .memory import MemoryStore

if TYPE_CHECKING:
    from . import strategies
    from .contract import StorageContract

__all__ = ["FrozenClock", "LicenseWriter", "MemoryStore", "StorageContract", "strategies", "tamper"]


def __getattr__(name: str) -> Any:
    if name == "StorageContract":
        from .contract import StorageContract

        return StorageContract
    if name == "strategies":
        # Not `from . import strategies`: that looks the name up here first, calling this
        # function again before the submodule is imported.
        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(name)
