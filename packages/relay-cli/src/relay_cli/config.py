"""``relay serve --config relay.toml``: every serve setting as a TOML key, and the process's one
cattrs converter.

How a setting is resolved: flag, then environment variable, then the file, then the default.
The file is read with `tomllib`, checked by structuring it into `ServeFile` with the one
converter (`make_cli_converter`; `--json` output and the admin API's bodies go through it too),
and then handed to `relay_cli.server.resolve_options` as the lowest layer of the environment:
each key stands in for the variable its flag already reads (`ttl` for ``RELAY_LEASE_TTL``), so
a flag and a set variable win over the file, and every rule of that variable applies to the key.
Global settings in the file (`database`, `no_audit`, `pragmas`) fill in the launcher's settings
the same way; a `--pragma` flag wins over the same pragma in the file.

Adding a setting to the config file is ONE field in `ServeFile`, named like its flag (dashes as
underscores), typed, declared with `setting(env="RELAY_...")` naming the variable its flag falls
back to. Options: ``secret=True`` (masked by ``--print-config``), ``option=`` the `ServeOptions`
attribute when the name differs (``invert=True`` for a ``no_*`` key of a positive option),
``globals=True`` for the launcher's `Settings`. ``--print-config`` then prints it, from the
`ServeOptions` attribute of the same name if there is one.

Every problem is one line naming the file and the key, e.g.
``error: relay.toml: ttl: invalid duration "2 minutes"``, exit 1.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NewType

import attrs
from relay_core import RelayError
from relay_core.small_files import FileError, read_text

from .durations import DurationError, format_duration, parse_duration
from .server import MAX_CULL_INTERVAL, MAX_TTL, MAX_WAIT, MIN_TTL

if TYPE_CHECKING:
    import cattrs

    from .runtime import Settings
    from .server import ServeOptions

__all__ = [
    "ConfigError",
    "Duration",
    "ServeFile",
    "load_config",
    "make_cli_converter",
    "print_config",
    "setting",
]

Duration = NewType("Duration", str)
"""A Go duration in the file (``"2m"``, ``"1m30s"``); checked when the file is read."""

WaitSeconds = NewType("WaitSeconds", str)
"""``max_wait``: whole seconds as an integer (``60``) or a Go duration (``"1m"``); 0 disables."""

PragmaValue = NewType("PragmaValue", str)
"""A pragma's value: a TOML string, integer or boolean, passed to SQLite as text."""

MASK = "********"


class ConfigError(RelayError):
    """A config file that cannot be used; the message names the file and the key."""


def setting(
    env: str | None = None,
    *,
    secret: bool = False,
    option: str | None = None,
    invert: bool = False,
    globals: bool = False,
    validator: Any = None,
) -> Any:
    """A `ServeFile` field: optional in the file; see the module docstring."""
    return attrs.field(
        default=None,
        validator=validator,
        metadata={
            "env": env,
            "secret": secret,
            "option": option,
            "invert": invert,
            "globals": globals,
        },
    )


class InvalidKeyError(ValueError):
    """A validator's complaint about one key (attrs validators run after cattrs has
    attributed each value to its key, so they name it themselves)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _port(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise InvalidKeyError(attribute.name, f"must be 0-65535, got {value}")


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise InvalidKeyError(attribute.name, f"must be at least 1, got {value}")


def _duration_within(least: float, most: float) -> Any:
    """A duration key from `least` (0: must be positive) to `most`, as the flag's rule."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        seconds = parse_duration(value)
        if least and seconds < least:
            shown = format_duration(least)
            raise InvalidKeyError(attribute.name, f'must be at least {shown}, got "{value}"')
        if not least and seconds <= 0:
            raise InvalidKeyError(attribute.name, f'must be positive, got "{value}"')
        if seconds > most:
            shown = format_duration(most)
            raise InvalidKeyError(attribute.name, f'must be at most {shown}, got "{value}"')

    return check


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise InvalidKeyError(attribute.name, f"must not be negative, got {value}")


@attrs.frozen(kw_only=True)
class ServeFile:
    """The keys of ``relay.toml``; all optional. See the module docstring to add one."""

    bind: str | None = setting(env="RELAY_ADDR", option="host")
    port: int | None = setting(env="RELAY_PORT", validator=_port)
    signing_secret: str | None = setting(env="RELAY_SIGNING_SECRET", secret=True)
    signing_secret_file: str | None = setting()  # read into RELAY_SIGNING_SECRET by file_environ
    ttl: Duration | None = setting(  # noqa: RUF009
        env="RELAY_LEASE_TTL", validator=_duration_within(MIN_TTL, MAX_TTL)
    )
    no_heartbeats: bool | None = setting(
        env="RELAY_NO_HEARTBEATS", option="heartbeats", invert=True
    )
    strategy: Literal["fifo", "lifo", "rand"] | None = setting(env="RELAY_STRATEGY")
    cull_interval: Duration | None = setting(  # noqa: RUF009
        env="RELAY_CULL_INTERVAL", validator=_duration_within(0, MAX_CULL_INTERVAL)
    )
    pool: str | None = setting(env="RELAY_POOL")
    threads: int | None = setting(env="RELAY_THREADS", validator=_at_least_one)
    admin_token: str | None = setting(env="RELAY_ADMIN_TOKEN", secret=True)
    admin_token_file: str | None = setting(env="RELAY_ADMIN_TOKEN_FILE")
    no_metrics: bool | None = setting(env="RELAY_NO_METRICS", option="metrics", invert=True)
    signing_key_file: str | None = setting(env="RELAY_SIGNING_KEY_FILE")
    node_token_file: str | None = setting(env="RELAY_NODE_TOKEN_FILE")
    allow_fingerprints: str | None = setting(env="RELAY_ALLOW_FINGERPRINTS")
    max_new_nodes_per_minute: int | None = setting(
        env="RELAY_MAX_NEW_NODES_PER_MINUTE", validator=_at_least_one
    )
    max_wait: WaitSeconds | None = setting(env="RELAY_MAX_WAIT")  # noqa: RUF009
    max_waiting: int | None = setting(env="RELAY_MAX_WAITING", validator=_not_negative)
    database: str | None = setting(env="RELAY_DATABASE", globals=True)
    no_audit: bool | None = setting(env="RELAY_NO_AUDIT", option="audit", invert=True, globals=True)
    pragmas: dict[str, PragmaValue] | None = setting(globals=True)  # noqa: RUF009 - None


def _check_duration(value: object, _: type) -> Duration:
    if not isinstance(value, str):
        raise TypeError(f'expected a duration string like "1m30s", got {_shown(value)}')
    try:
        parse_duration(value)
    except DurationError:
        raise ValueError(f'invalid duration "{value}"') from None
    return Duration(value)


def _strict(kind: type, noun: str) -> Any:
    def structure(value: object, _: type) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {noun}, got {_shown(value)}")
        return value

    return structure


def _wait_seconds(value: object, _: type) -> WaitSeconds:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        if value > MAX_WAIT:
            raise ValueError(f"must be at most {MAX_WAIT}, got {value}")
        return WaitSeconds(str(value))
    if not isinstance(value, str):
        raise TypeError(f'expected seconds or a duration string like "1m", got {_shown(value)}')
    try:
        seconds = parse_duration(value)
    except DurationError:
        raise ValueError(f'invalid duration "{value}"') from None
    if seconds < 0 or seconds != int(seconds):
        raise ValueError(f'must be whole seconds and not negative, got "{value}"')
    if seconds > MAX_WAIT:
        raise ValueError(f'must be at most {format_duration(MAX_WAIT)}, got "{value}"')
    return WaitSeconds(value)


def _pragma(value: object, _: type) -> PragmaValue:
    if isinstance(value, bool):
        return PragmaValue("ON" if value else "OFF")
    if isinstance(value, str | int | float):
        return PragmaValue(str(value))
    raise TypeError(f"expected a string or a number, got {_shown(value)}")


def _shown(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def make_cli_converter() -> cattrs.Converter:
    """`relay_core.convert`'s converter with the config file's strict hooks: a TOML value of
    the wrong type is an error, never coerced (``port = "80"`` is refused)."""
    from relay_core.convert import make_converter

    converter = make_converter()
    converter.register_structure_hook(Duration, _check_duration)
    converter.register_structure_hook(PragmaValue, _pragma)
    converter.register_structure_hook(WaitSeconds, _wait_seconds)
    converter.register_structure_hook(str, _strict(str, "a string"))
    converter.register_structure_hook(int, _strict(int, "an integer"))
    converter.register_structure_hook(bool, _strict(bool, "true or false"))
    return converter


def _first_problem(exc: BaseException) -> tuple[str, str]:
    """(key, message) for the first thing wrong in a cattrs structuring error."""
    import cattrs

    if isinstance(exc, InvalidKeyError):
        return exc.key, str(exc)
    if isinstance(exc, cattrs.ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for error in without:
            if isinstance(error, cattrs.ForbiddenExtraKeysError):
                return sorted(error.extra_fields)[0], "unknown key"
        for error, note in with_notes:
            name = getattr(note, "name", "?")
            if isinstance(error, cattrs.BaseValidationError):  # a nested table (pragmas)
                inner_key, message = _first_problem(error)
                return f"{name}.{inner_key}", message
            return name, _message(error)
        if without:
            return _first_problem(without[0])
    if isinstance(exc, cattrs.IterableValidationError | cattrs.BaseValidationError):
        for error, note in exc.group_exceptions()[0]:  # type: ignore[attr-defined]
            return str(getattr(note, "index", "?")), _message(error)
    return "?", _message(exc)


def _message(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, AttributeError) and "items" in text:
        return "expected a table"
    if isinstance(error, KeyError) or not text:
        return "invalid value"
    if "Literal" in text or "not in" in text:
        return "invalid value"
    return text


def load_config(path: str, converter: cattrs.Converter) -> ServeFile:
    """Read and check the file; `ConfigError` naming the file and the key."""
    label = path
    if not Path(path).exists():
        raise ConfigError(f"{label}: no such file")
    try:
        data = tomllib.loads(read_text(path))
    except FileError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}") from None
    strategy = data.get("strategy")
    if "strategy" in data and strategy not in ("fifo", "lifo", "rand"):
        raise ConfigError(
            f'{label}: strategy: must be one of "lifo", "fifo", or "rand", got {_shown(strategy)}'
        )
    try:
        return converter.structure(data, ServeFile)
    except Exception as exc:
        key, message = _first_problem(exc)
        raise ConfigError(f"{label}: {key}: {message}") from None


def _env_text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)


def file_environ(config: ServeFile, path: str) -> dict[str, str]:
    """The file's values as the variables their flags read (the lowest layer). A ``*_file``
    key whose secret has no key of its own is read here, so its errors name the key."""
    layer: dict[str, str] = {}
    for field in attrs.fields(ServeFile):
        env = field.metadata.get("env")
        value = getattr(config, field.name)
        if env is None or value is None:
            continue
        layer[env] = _env_text(value)
    for field in attrs.fields(ServeFile):
        named = getattr(config, field.name)
        if field.name.endswith("_file") and named is not None and not Path(named).is_file():
            reason = "no such file" if not Path(named).exists() else "not a file"
            raise ConfigError(f"{path}: {field.name}: {reason}: {named}")
    if config.signing_secret_file is not None and config.signing_secret is None:
        try:
            secret = read_text(config.signing_secret_file).strip()
        except FileError as exc:
            raise ConfigError(f"{path}: signing_secret_file: {exc}") from None
        if not secret:
            raise ConfigError(f"{path}: signing_secret_file: the file is empty")
        layer["RELAY_SIGNING_SECRET"] = secret
    return layer


def layered(environ: Mapping[str, str], config: ServeFile | None, path: str) -> dict[str, str]:
    """The environment with the file underneath: a variable that is set (non-empty) wins."""
    if config is None:
        return dict(environ)
    merged = file_environ(config, path)
    merged.update({k: v for k, v in environ.items() if v})
    return merged


def apply_globals(
    settings: Settings, config: ServeFile | None, environ: Mapping[str, str]
) -> Settings:
    """The launcher's settings with the file's `database`, `no_audit` and `pragmas` where no
    flag (`Settings.flags`) or variable set them."""
    if config is None:
        return settings
    flags = settings.flags
    changes: dict[str, Any] = {}
    if config.database and "database" not in flags and not environ.get("RELAY_DATABASE"):
        changes["database"] = config.database
    if (
        config.no_audit is not None
        and "no_audit" not in flags
        and not environ.get("RELAY_NO_AUDIT")
    ):
        changes["audit"] = not config.no_audit
    if config.pragmas:
        changes["pragmas"] = {**config.pragmas, **settings.pragmas}
    return attrs.evolve(settings, **changes) if changes else settings


def print_config(
    options: ServeOptions,
    settings: Settings,
    converter: cattrs.Converter,
    environ: Mapping[str, str],
) -> str:
    """The effective settings as TOML, secrets masked, every `ServeFile` key that has a value."""
    import tomli_w

    values: dict[str, Any] = {}
    for field in attrs.fields(ServeFile):
        meta = field.metadata
        source: object = settings if meta.get("globals") else options
        name = meta.get("option") or field.name
        if hasattr(source, name):
            value = getattr(source, name)
            if meta.get("invert"):
                value = not value
        elif meta.get("env") and environ.get(meta["env"]):
            value = environ[meta["env"]]  # a setting resolved elsewhere: its layered value
        else:
            continue
        if value is None or value == {}:
            continue
        if meta.get("secret"):
            value = MASK
        elif "Duration" in str(field.type):
            value = format_duration(float(value))
        values[field.name] = value
    if "pragmas" in values:
        values["pragmas"] = dict(values["pragmas"])
    return tomli_w.dumps(converter.unstructure(values))


def config_path(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """--config, else $RELAY_CONFIG."""
    return flag if flag is not None else (environ.get("RELAY_CONFIG") or None)
