"""relay-http."""
