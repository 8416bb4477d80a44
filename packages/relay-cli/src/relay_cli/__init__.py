"""relay-cli."""
