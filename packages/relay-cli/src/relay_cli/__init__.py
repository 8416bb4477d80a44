"""relay-cli: the `relay` command, composition root of Relay (storage + service + HTTP).

Kept import-free: the console script imports this package on every start, and `relay version`
must stay about as fast as a bare `python -c pass`.
"""

__version__ = "0.1.0"
