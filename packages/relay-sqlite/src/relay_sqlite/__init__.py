"""relay-sqlite."""

def open_store(database: str, *, pragmas: dict[str, str] | None = None) -> object:
    raise NotImplementedError
