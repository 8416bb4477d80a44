"""The `relay` command (being built)."""


def main() -> None:
    raise SystemExit("relay: the CLI is not built yet")
