"""`relay serve`: validate every flag and variable, open the store, hand over to relay-http.

relay-http (falcon, waitress) is imported only here, so the other commands start fast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import attrs
from cyclopts import Parameter

from .durations import DurationError, format_duration, parse_duration
from .runtime import Runtime, UsageError
from .values import UnsetFlag, env_bool, env_duration, env_int, env_str

if TYPE_CHECKING:
    from .locking import LockConfig

__all__ = ["ServeOptions", "serve"]

log = logging.getLogger("relay.cli")

STRATEGIES = ("fifo", "lifo", "rand")
_STRATEGY_CHOICES = 'must be one of "lifo", "fifo", or "rand"'
MIN_TTL = 30.0
MAX_TTL = 10 * 365 * 86400.0
"""Ten years: longer is "never expires", which --no-heartbeats says; expiry times stay printable."""
MAX_CULL_INTERVAL = 86400.0
"""A day: the reaper sleeps this long between passes, and a longer sleep overflows the clock."""
MAX_WAIT = 3600
"""An hour: a claim's ``Prefer: wait`` holds a connection and a thread for that long."""


@attrs.frozen
class ServeOptions:
    """`serve`'s settings after flags, environment and defaults are combined and checked."""

    host: str
    port: int
    signing_secret: str | None
    ttl: float
    heartbeats: bool
    strategy: str
    cull_interval: float
    pool: str | None
    threads: int
    signing_key_file: str | None = None
    node_token_file: str | None = None
    allow_fingerprints: str | None = None
    max_new_nodes_per_minute: int | None = None
    admin_token: str | None = attrs.field(default=None, repr=False)
    metrics: bool = True
    max_wait: int = 60
    max_waiting: int = 256


def _duration_flag(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: {exc}') from None


def resolve_ttl(environ: Mapping[str, str], ttl: str | None) -> float:
    """The lease TTL from `--ttl`, else `RELAY_LEASE_TTL`, else 60 s; Keygen Relay's minimum
    of 30 s holds for every command that takes it (`serve`, and `leases` to show expiries)."""
    ttl_s = _duration_flag(ttl, "-t, --ttl")
    if ttl_s is None:
        ttl_s = env_duration(environ, "RELAY_LEASE_TTL") or 60.0
    if ttl_s < MIN_TTL:
        raise UsageError("time-to-live value must be at least 30s")
    if ttl_s > MAX_TTL:
        raise UsageError(f"time-to-live value must be at most {format_duration(MAX_TTL)}")
    return ttl_s


def resolve_options(
    environ: Mapping[str, str],
    *,
    bind: str | None,
    port: int | None,
    signing_secret: str | None,
    ttl: str | None,
    no_heartbeats: bool | None,
    strategy: str | None,
    cull_interval: str | None,
    pool: str | None,
    threads: int | None,
    lock: LockConfig | None = None,
    signing_key_file: str | None = None,
    node_token_file: str | None = None,
    allow_fingerprints: str | None = None,
    max_new_nodes_per_minute: int | None = None,
    admin_token: str | None = None,
    admin_token_file: str | None = None,
    no_metrics: bool | None = None,
    max_wait: str | None = None,
    max_waiting: int | None = None,
) -> ServeOptions:
    """Combine flags (first), environment (first non-zero) and defaults; raise `UsageError`.

    A node lock's address, port and signing secret win over everything: their flags are removed
    in locked mode and their environment variables are not read.
    """
    ttl_s = resolve_ttl(environ, ttl)

    cull_s = _duration_flag(cull_interval, "--cull-interval")
    if cull_s is None:
        cull_s = env_duration(environ, "RELAY_CULL_INTERVAL") or 15.0
    if not 0 < cull_s <= MAX_CULL_INTERVAL:
        source = (
            f'argument "{cull_interval}" for "--cull-interval" flag'
            if cull_interval is not None
            else f'RELAY_CULL_INTERVAL "{environ.get("RELAY_CULL_INTERVAL")}"'
        )
        reason = (
            "must be positive"
            if cull_s <= 0
            else f"must be at most {format_duration(MAX_CULL_INTERVAL)}"
        )
        raise UsageError(f"invalid {source}: {reason}")

    if strategy is not None:
        if strategy not in STRATEGIES:
            raise UsageError(
                f'invalid argument "{strategy}" for "--strategy" flag: {_STRATEGY_CHOICES}'
            )
    else:
        strategy = env_str(environ, "RELAY_STRATEGY") or "fifo"
        if strategy not in STRATEGIES:
            raise UsageError(f'invalid RELAY_STRATEGY "{strategy}": {_STRATEGY_CHOICES}')

    if lock is not None and lock.port is not None:
        port = lock.port
    elif port is None:
        port = env_int(environ, "RELAY_PORT", "PORT") or 6349
    if not 0 <= port <= 65535:
        raise UsageError(f'invalid argument "{port}" for "-p, --port" flag: must be 0-65535')

    if threads is None:
        threads = env_int(environ, "RELAY_THREADS") or 16
    if threads < 1:
        raise UsageError(f'invalid argument "{threads}" for "--threads" flag: must be at least 1')

    heartbeats = not (
        no_heartbeats if no_heartbeats is not None else env_bool(environ, "RELAY_NO_HEARTBEATS")
    )
    if lock is not None and lock.addr is not None:
        host = lock.addr
    elif bind is not None:
        host = bind
    else:
        host = env_str(environ, "RELAY_ADDR", "BIND_ADDR") or "0.0.0.0"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise UsageError('invalid argument "" for "-b, --bind" flag: an address is required')
    if lock is not None and lock.signing_secret is not None:
        secret: str | None = lock.signing_secret
    elif signing_secret is not None:
        secret = signing_secret
    else:
        secret = env_str(environ, "RELAY_SIGNING_SECRET")
    pool = pool if pool is not None else env_str(environ, "RELAY_POOL")
    if lock is not None and lock.signing_key is not None:
        signing_key_file = None  # the lock's key wins; its flag and variable are not read
    elif signing_key_file is None:
        signing_key_file = env_str(environ, "RELAY_SIGNING_KEY_FILE")
    if node_token_file is None:
        node_token_file = env_str(environ, "RELAY_NODE_TOKEN_FILE")
    if allow_fingerprints is None:
        allow_fingerprints = env_str(environ, "RELAY_ALLOW_FINGERPRINTS")
    if max_new_nodes_per_minute is None:
        max_new_nodes_per_minute = env_int(environ, "RELAY_MAX_NEW_NODES_PER_MINUTE")
    if max_new_nodes_per_minute is not None and max_new_nodes_per_minute < 1:
        raise UsageError(
            f'invalid argument "{max_new_nodes_per_minute}" for "--max-new-nodes-per-minute" '
            "flag: must be at least 1"
        )
    from .operator_commands import resolve_admin_token

    token = resolve_admin_token(environ, admin_token=admin_token, admin_token_file=admin_token_file)
    metrics = not (no_metrics if no_metrics is not None else env_bool(environ, "RELAY_NO_METRICS"))
    wait_s = _max_wait(environ, max_wait)
    waiting_n = _max_waiting(environ, max_waiting)
    return ServeOptions(
        host=host,
        port=port,
        signing_secret=secret or None,
        ttl=ttl_s,
        heartbeats=heartbeats,
        strategy=strategy,
        cull_interval=cull_s,
        pool=pool or None,
        threads=threads,
        signing_key_file=signing_key_file or None,
        node_token_file=node_token_file or None,
        allow_fingerprints=allow_fingerprints or None,
        max_new_nodes_per_minute=max_new_nodes_per_minute,
        admin_token=token,
        metrics=metrics,
        max_wait=wait_s,
        max_waiting=waiting_n,
    )


def _whole_seconds(text: str) -> int:
    """A bare number of seconds (``30``) or a Go duration of whole seconds (``1m``), from 0 to
    `MAX_WAIT`."""
    digits = text[1:] if text[:1] in "+-" else text
    seconds = float(int(text)) if digits.isascii() and digits.isdigit() else parse_duration(text)
    if seconds < 0:
        raise DurationError("must not be negative")
    if seconds > MAX_WAIT:
        raise DurationError(f"must be at most {MAX_WAIT} seconds ({format_duration(MAX_WAIT)})")
    if seconds != int(seconds):
        raise DurationError("must be whole seconds")
    return int(seconds)


def _max_wait(environ: Mapping[str, str], flag: str | None) -> int:
    """``--max-wait``, else ``RELAY_MAX_WAIT`` (where ``0`` disables waiting too), else 60."""
    if flag is not None:
        try:
            return _whole_seconds(flag)
        except DurationError as exc:
            raise UsageError(f'invalid argument "{flag}" for "--max-wait" flag: {exc}') from None
    value = environ.get("RELAY_MAX_WAIT", "")
    if not value:
        return 60
    try:
        return _whole_seconds(value)
    except DurationError as exc:
        raise UsageError(f'invalid RELAY_MAX_WAIT "{value}": {exc}') from None


def _max_waiting(environ: Mapping[str, str], flag: int | None) -> int:
    """``--max-waiting``, else ``RELAY_MAX_WAITING``, else 256; never negative."""
    if flag is not None:
        if flag < 0:
            raise UsageError(
                f'invalid argument "{flag}" for "--max-waiting" flag: must not be negative'
            )
        return flag
    value = environ.get("RELAY_MAX_WAITING", "")
    if not value:
        return 256
    if not (value.isascii() and value.isdigit()):
        raise UsageError(f'invalid RELAY_MAX_WAITING "{value}": must be a whole number')
    return int(value)


def serve(
    *,
    bind: Annotated[str | None, Parameter(name=["--bind", "-b"])] = None,
    port: Annotated[int | None, Parameter(name=["--port", "-p"])] = None,
    signing_secret: str | None = None,
    ttl: Annotated[str | None, Parameter(name=["--ttl", "-t"])] = None,
    no_heartbeats: UnsetFlag = None,
    strategy: Annotated[str | None, Parameter(completer=lambda _: STRATEGIES)] = None,
    cull_interval: str | None = None,
    pool: str | None = None,
    threads: int | None = None,
    signing_key_file: str | None = None,
    node_token_file: str | None = None,
    allow_fingerprints: str | None = None,
    max_new_nodes_per_minute: int | None = None,
    admin_token: str | None = None,
    admin_token_file: str | None = None,
    no_metrics: UnsetFlag = None,
    max_wait: str | None = None,
    max_waiting: int | None = None,
    config: str | None = None,
    print_config: Annotated[bool, Parameter(negative="")] = False,
    runtime: Annotated[Runtime, Parameter(parse=False)],
) -> int:
    """run the relay server to manage license distribution

    Stops gracefully on SIGTERM or SIGINT: in-flight requests finish, then the database closes.

    Parameters
    ----------
    bind
        ip address to bind the relay server to [$RELAY_ADDR=0.0.0.0, $BIND_ADDR]
    port
        port to run the relay server on [$RELAY_PORT=6349, $PORT]
    signing_secret
        secret for signing responses [$RELAY_SIGNING_SECRET=hunter2]
    ttl
        time-to-live for leases, 30s to 87600h (default 1m0s) [$RELAY_LEASE_TTL=60s]
    no_heartbeats
        disable node heartbeat monitoring and culling as well as lease extensions [$RELAY_NO_HEARTBEATS=1]
    strategy
        strategy for license distribution e.g. "fifo", "lifo", or "rand" (default fifo) [$RELAY_STRATEGY=rand]
    cull_interval
        interval at which to cull dead nodes, at most 24h (default 15s) [$RELAY_CULL_INTERVAL=15s]
    pool
        pool to serve licenses from [$RELAY_POOL=prod]
    threads
        worker threads serving requests (default 16) [$RELAY_THREADS=16]
    signing_key_file
        Ed25519 private key (PEM, from `relay signing-key new`): adds an ed25519 signature to every response [$RELAY_SIGNING_KEY_FILE=key.pem]
    node_token_file
        file of node tokens, one per line: nodes must send "Authorization: Bearer TOKEN" [$RELAY_NODE_TOKEN_FILE]
    allow_fingerprints
        file of fingerprints and fnmatch patterns that may claim; reloaded on change and SIGHUP [$RELAY_ALLOW_FINGERPRINTS]
    max_new_nodes_per_minute
        new seats one client address may take per minute; heartbeats and releases are not limited [$RELAY_MAX_NEW_NODES_PER_MINUTE=60]
    admin_token
        enable the admin API under /v1/admin for this bearer token [$RELAY_ADMIN_TOKEN]
    admin_token_file
        read the admin token from this file instead [$RELAY_ADMIN_TOKEN_FILE]
    no_metrics
        do not serve Prometheus metrics at /metrics [$RELAY_NO_METRICS=1]
    max_wait
        longest wait for a seat a claim may ask for with "Prefer: wait=N", in seconds or as a duration, at most 1h; 0 disables waiting (default 60) [$RELAY_MAX_WAIT=60]
    max_waiting
        claims waiting for a seat at once; the next one gets 410 with Retry-After (default 256) [$RELAY_MAX_WAITING=256]
    config
        read settings from this TOML file; flags and variables win over it [$RELAY_CONFIG]
    print_config
        print the effective settings as TOML (secrets masked) and exit
    """
    from .config import apply_globals, config_path, layered, load_config
    from .config import print_config as render_config

    path = config_path(config, runtime.environ)
    file = load_config(path, runtime.converter) if path else None
    environ = layered(runtime.environ, file, path or "")
    runtime.settings = apply_globals(runtime.settings, file, runtime.environ)
    options = resolve_options(
        environ,
        bind=bind,
        port=port,
        signing_secret=signing_secret,
        ttl=ttl,
        no_heartbeats=no_heartbeats,
        strategy=strategy,
        cull_interval=cull_interval,
        pool=pool,
        threads=threads,
        lock=runtime.lock,
        signing_key_file=signing_key_file,
        node_token_file=node_token_file,
        allow_fingerprints=allow_fingerprints,
        max_new_nodes_per_minute=max_new_nodes_per_minute,
        admin_token=admin_token,
        admin_token_file=admin_token_file,
        no_metrics=no_metrics,
        max_wait=max_wait,
        max_waiting=max_waiting,
    )
    from .trust import load_access, load_signing_key, locked_signing_key

    if runtime.lock is not None and runtime.lock.signing_key is not None:
        signing_key = locked_signing_key(runtime.lock.signing_key)
    elif options.signing_key_file:
        signing_key = load_signing_key(options.signing_key_file)
    else:
        signing_key = None
    access = load_access(
        node_token_file=options.node_token_file,
        allow_fingerprints=options.allow_fingerprints,
        max_new_nodes_per_minute=options.max_new_nodes_per_minute,
    )
    if print_config:
        runtime.out.stdout.write(
            render_config(options, runtime.settings, runtime.converter, environ)
        )
        return 0
    metrics = None
    if options.metrics:
        from relay_http.metrics import Metrics

        metrics = Metrics()
    relay = runtime.relay(
        strategy=options.strategy,
        ttl=options.ttl,
        heartbeats=options.heartbeats,
        events=metrics,
        waiting=options.max_wait > 0,
    )

    import relay_http

    runtime.out.success("the server is starting")
    runtime.out.stdout.flush()
    log.info(
        "starting server addr=%s port=%d pool=%s ttl=%s heartbeats=%s strategy=%s "
        "admin=%s metrics=%s",
        options.host,
        options.port,
        options.pool or "<nil>",
        format_duration(options.ttl),
        options.heartbeats,
        options.strategy,
        options.admin_token is not None,
        options.metrics,
    )

    if signing_key is not None:
        from relay_core.signing import public_key_hex

        log.info("signing responses with ed25519 public_key=%s", public_key_hex(signing_key))

    def ready(host: str, port: int) -> None:
        log.info("listening on %s:%d", host, port)

    relay_http.serve(
        relay,
        host=options.host,
        port=options.port,
        pool=options.pool,
        signing_secret=options.signing_secret,
        cull_interval=options.cull_interval if options.heartbeats else None,
        threads=options.threads,
        ready=ready,
        signing_key=signing_key,
        access=access,
        admin_token=options.admin_token,
        metrics=metrics,
        converter=runtime.converter,
        max_wait=options.max_wait,
        max_waiting=options.max_waiting,
    )
    log.info("server stopped")
    return 0
