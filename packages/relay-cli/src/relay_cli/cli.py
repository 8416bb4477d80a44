"""The cyclopts app and its meta launcher: the one composition root of the `relay` process.

The launcher parses the global flags, picks the store through the ``relay.storage`` entry points,
and injects a `Runtime` (settings, printers, clock, lazily opened store and `Relay`) into the
command, whose thin function only validates its own flags, calls the service and prints. Every
failure becomes one line on stderr and exit status 1: ``Error: <message>`` when the command
could not run (bad usage, a lock that does not unlock), ``error: <message>`` when it failed.

Node-locked (a ``relay.lock`` entry point is installed): the ``--node-locked-*`` global flags
exist, locked values remove their flags, and every command that gets a `Runtime` is unlocked
first (spec §6.2), before anything can open the database.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import App, CycloptsError, Parameter, UnusedCliTokensError
from cyclopts.exceptions import (
    CoercionError,
    MissingArgumentError,
    UnknownCommandError,
    UnknownOptionError,
)

from . import __version__
from .audit import logs
from .dbcopy import db_app
from .licenses import add, delete, ls, stat
from .lockfind import LockLoadError, find_lock, version_string
from .locking import LockConfig, LockConfigError, UnlockError, unlock
from .logsetup import configure_logging
from .nodelock import fingerprint_command, lock_app
from .operator_commands import leases, release
from .output import Output, color_wanted
from .report import report
from .runtime import Runtime, Settings, UsageError, parse_pragmas
from .server import serve
from .trust import signing_key_app
from .values import UnsetFlag, env_bool, env_str

if TYPE_CHECKING:
    from relay_core.ports import Clock

    from .machine import Machine
    from .storage import StoreOpener

__all__ = ["create_app", "installed_lock", "run", "without_flags"]

log = logging.getLogger("relay.cli")

HELP = """relay is a small command line utility that distributes license files to nodes on a local network

Keygen Relay CLI, version {version} (`relay --version` prints it)."""


def _flag_names(names: Iterable[str]) -> str:
    """pflag's way to name a flag in messages: ``-p, --port``."""
    return ", ".join(sorted(names, key=lambda name: (name.startswith("--"), name)))


def _unknown_flag(word: str) -> str:
    """pflag's ``unknown flag: --foo`` / ``unknown shorthand flag: 'x' in -x``."""
    word = word.partition("=")[0]
    if word.startswith("--") or len(word) < 2:
        return f"unknown flag: {word}"
    return f"unknown shorthand flag: {word[1]!r} in {word}"


def _pflag_message(exc: CycloptsError) -> str | None:
    """cobra/pflag's wording for a parse error (spec §1.1), or None to keep cyclopts' own."""
    if isinstance(exc, UnknownCommandError) and exc.unused_tokens:
        chain = " ".join(["relay", *(exc.command_chain or ())])
        suggestion = str(exc).partition(" Did you mean ")[2].partition(" Available")[0]
        hint = f" Did you mean {suggestion}" if suggestion else ""
        return f'unknown command "{exc.unused_tokens[0]}" for "{chain}".{hint} Run \'relay --help\' for usage.'
    if isinstance(exc, UnknownOptionError):
        return _unknown_flag(exc.token.keyword or exc.token.value)
    if isinstance(exc, MissingArgumentError) and type(exc) is MissingArgumentError:
        word = (
            exc.keyword
            or next((t.keyword for t in reversed(exc.argument.tokens) if t.keyword), None)
            if exc.argument
            else exc.keyword
        )
        if word and exc.argument is not None and exc.argument.token_count()[0] == 1:
            shorthand = not word.startswith("--")
            return f"flag needs an argument: {f'{word[1]!r} in ' if shorthand else ''}{word}"
        return None
    if isinstance(exc, CoercionError) and exc.token and exc.token.keyword and exc.argument:
        reason = (str(exc).partition(": ")[2] or str(exc)).removesuffix(".")
        return (
            f'invalid argument "{exc.token.value}" for "{_flag_names(exc.argument.names)}" '
            f"flag: {reason}"
        )
    return None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, CycloptsError):
        exc.verbose = False  # no developer preamble (signature, tokens) in a user's error line
    if isinstance(exc, UnusedCliTokensError) and exc.unused_tokens:
        return "unexpected argument(s): " + " ".join(exc.unused_tokens)
    if isinstance(exc, CycloptsError) and (message := _pflag_message(exc)) is not None:
        return message
    text = " ".join(str(exc).split()).partition(" Available commands:")[0]
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return text if text.endswith("..") else text.removesuffix(".")


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False


def without_flags(command: Callable[..., Any], names: Collection[str]) -> Callable[..., Any]:
    """`command` with the parameters `names` removed from the command line (unknown flags, not
    in help); the function then gets their defaults. Used for the values a node lock pins."""
    if not names:
        return command
    hints = typing.get_type_hints(command, include_extras=True)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    wrapper.__annotations__ = {
        name: Annotated[hint, Parameter(parse=False)] if name in names else hint
        for name, hint in hints.items()
    }
    return wrapper


def installed_lock(paths: Iterable[str] | None = None) -> LockConfig | None:
    """The node lock installed on `paths` (default `sys.path`), validated; raise `UnlockError`
    if one is installed but unusable, so that a broken lock fails closed."""
    try:
        found = find_lock(paths)
    except LockLoadError as exc:
        raise UnlockError(str(exc)) from None
    if found is None:
        return None
    try:
        return LockConfig.from_values(found.values)
    except LockConfigError as exc:
        raise UnlockError(f"node lock {found.distribution} is invalid: {exc}") from None


def unlock_reason(
    lock: LockConfig,
    environ: Mapping[str, str],
    *,
    machine_file_path: str | None,
    license_key: str | None,
    machine: Machine,
    now: float,
) -> str | None:
    """Resolve the --node-locked-* flags against the environment and unlock; the failure reason
    (spec §6.2), or None when this machine and its machine file match the lock."""
    if machine_file_path is None:
        machine_file_path = env_str(environ, "RELAY_NODE_LOCKED_MACHINE_FILE_PATH") or "./relay.lic"
    if license_key is None:
        license_key = env_str(environ, "RELAY_NODE_LOCKED_LICENSE_KEY") or ""
    try:
        unlock(
            lock,
            machine_file_path=machine_file_path,
            license_key=license_key,
            machine=machine,
            now=now,
        )
    except UnlockError as exc:
        log.debug("failed to unlock relay")  # the caller's error line says it once
        return str(exc)
    return None


def create_app(
    *,
    open_store: StoreOpener | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    lock: LockConfig | None = None,
    machine: Machine | None = None,
) -> App:
    """Build the `relay` command line; returns the launcher (meta app) to call with argv.

    `open_store`, `clock`, `environ` and `machine` default to the ``relay.storage`` entry points,
    the system clock, `os.environ` and this machine; tests pass fakes here instead of patching
    anything. `lock` (see `installed_lock`) puts the app in node-locked mode.
    """
    full_version = version_string(__version__, None if lock is None else lock.fingerprint)

    def this_machine() -> Machine:
        if machine is not None:
            return machine
        from .machine import LocalMachine

        return LocalMachine()

    app = App(
        name="relay",
        help=HELP.format(version=full_version),
        version_flags=[],  # --version is the launcher's, so that only the root takes it
        default_parameter=Parameter(allow_repeating=True),  # pflag: the last --port 1 --port 2 wins
        exit_on_error=False,
        print_error=False,
        help_on_error=False,
    )
    app.command(without_flags(add, {"public_key", "public_key_file"} if lock else ()))
    app.command(completion_command(app), name="completion")
    app.command(db_app())
    app.command(delete, name="del")
    app.command(fingerprint_command(this_machine), name="fingerprint")
    app.command(help_command(app), name="help")
    app.command(lock_app())
    app.command(leases)
    app.command(logs)
    app.command(ls)
    app.command(release)
    app.command(report)
    pinned = {
        "bind": lock is not None and lock.addr is not None,
        "port": lock is not None and lock.port is not None,
        "signing_secret": lock is not None and lock.signing_secret is not None,
        "signing_key_file": lock is not None and lock.signing_key is not None,
    }
    app.command(without_flags(serve, {name for name, is_pinned in pinned.items() if is_pinned}))
    app.command(signing_key_app())
    app.command(stat)
    app.command(version_command(full_version), name="version")

    def launcher(
        *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
        database: str | None = None,
        verbose: Annotated[
            int,  # allow_repeating=None: every -v counts, the app's "last wins" is not for it
            Parameter(
                name=["--verbose", "-v"], count=True, show_default=False, allow_repeating=None
            ),
        ] = 0,
        no_audit: UnsetFlag = None,
        no_color: Annotated[bool, Parameter(negative="", show_default=False)] = False,
        pragma: Annotated[list[str] | None, Parameter(negative="")] = None,
        node_locked_machine_file_path: str | None = None,
        node_locked_license_key: str | None = None,
        version: Annotated[bool, Parameter(negative="", show=False)] = False,
    ) -> int:
        """Global flags, shared by every command.

        Parameters
        ----------
        database
            the path to a .sqlite database file, or backend://... for another storage backend
            [$RELAY_DATABASE=./relay.sqlite]
        verbose
            log level e.g. -vvv for "info" (default -v=1 i.e. "error") [$DEBUG=1]
        no_audit
            disable audit logs [$RELAY_NO_AUDIT=1]
        no_color
            disable colors in command output and logs
        pragma
            database pragma key-value pairs (e.g. --pragma mmap_size=536870912 --pragma synchronous=OFF)
        node_locked_machine_file_path
            path to the machine file that unlocks this node-locked relay
            [$RELAY_NODE_LOCKED_MACHINE_FILE_PATH=./relay.lic]
        node_locked_license_key
            license key that decrypts the machine file [$RELAY_NODE_LOCKED_LICENSE_KEY]
        """
        env = os.environ if environ is None else environ
        out = Output(color=color_wanted(env, no_color=no_color))
        if version:  # root only, as cobra's: `relay add --version` is an unknown flag
            if tokens:  # cobra names the first thing it cannot take
                first = tokens[0]
                if first.startswith("-"):
                    out.fatal(_unknown_flag(first))
                elif first in app:
                    out.fatal("unknown flag: --version")  # given to a command
                else:
                    out.fatal(
                        f'unknown command "{first}" for "relay". Run \'relay --help\' for usage.'
                    )
                return 1
            from .app import write_stdout

            return 0 if write_stdout(f"relay version {full_version}\n") else 1
        log_color = not no_color and not env.get("NO_COLOR") and _is_terminal(sys.stderr)
        configure_logging(verbose, env, color=log_color)
        try:
            # Extra words after a command are ignored, as cobra's commands do (spec §1.1);
            # an unknown flag among them is still an error.
            command, bound, unused, ignored = app.parse_known_args(tokens)
            flag = next((word for word in unused if word.startswith("-") and word != "-"), None)
            if flag is not None:
                out.fatal(_unknown_flag(flag))
                return 1
        except (CycloptsError, UsageError) as exc:
            out.fatal(_one_line(exc))
            return 1

        needs_runtime = "runtime" in ignored  # help, version, completion, fingerprint: no unlock
        if needs_runtime:
            from relay_core.service import SystemClock

            now_clock = clock or SystemClock()
            if lock is not None:
                reason = unlock_reason(
                    lock,
                    env,
                    machine_file_path=node_locked_machine_file_path,
                    license_key=node_locked_license_key,
                    machine=this_machine(),
                    now=now_clock.now(),
                )
                if reason is not None:
                    out.fatal(f"failed to unlock relay: {reason}")
                    return 1

        try:
            settings = Settings(
                database=database
                if database is not None
                else env_str(env, "RELAY_DATABASE") or "./relay.sqlite",
                verbosity=verbose,
                audit=not (no_audit if no_audit is not None else env_bool(env, "RELAY_NO_AUDIT")),
                color=out.color,
                pragmas=parse_pragmas(pragma or []),
                flags=frozenset(
                    name
                    for name, value in (("database", database), ("no_audit", no_audit))
                    if value is not None
                ),
            )
        except (CycloptsError, UsageError) as exc:
            out.fatal(_one_line(exc))
            return 1

        if not needs_runtime:  # nothing to open
            try:
                result = command(*bound.args, **bound.kwargs)
            except UsageError as exc:
                out.fatal(str(exc))
                return 1
            return result if isinstance(result, int) else 0

        from relay_core import BulkError, RelayError

        from .storage import open_store as entry_point_opener

        runtime = Runtime(
            settings, env, now_clock, open_store or entry_point_opener, out, lock=lock
        )
        status = 1
        try:
            result = command(*bound.args, **bound.kwargs, runtime=runtime)
            status = result if isinstance(result, int) else 0
        except UsageError as exc:
            out.fatal(str(exc))
        except BulkError as exc:
            for _, error in exc.errors:
                out.error(str(error))
        except RelayError as exc:
            out.error(str(exc))
        finally:
            try:
                runtime.close()
            except RelayError as exc:
                out.error(f"failed to close database connection: {exc}")
                status = 1
        return status

    locked_globals = () if lock else ("node_locked_machine_file_path", "node_locked_license_key")
    app.meta.default(without_flags(launcher, locked_globals))
    return app.meta


def version_command(text: str) -> Callable[[], int]:
    def version() -> int:
        """print the current relay version"""
        from .app import describe_build, write_stdout

        if not write_stdout(text + "\n"):
            return 1
        describe_build()
        return 0

    return version


def completion_command(app: App) -> Callable[..., int]:
    def completion(shell: Literal["bash", "zsh", "fish", "powershell"], /) -> int:
        """Generate the autocompletion script for the specified shell

        Parameters
        ----------
        shell
            bash, zsh, fish or powershell; e.g. `relay completion bash > /etc/bash_completion.d/relay`
        """
        sys.stdout.write(
            app.generate_completion(prog_name="relay", shell=shell).rstrip("\n") + "\n"
        )
        return 0

    return completion


def help_command(app: App) -> Callable[..., int]:
    def help_(*command: str) -> int:
        """help for a command

        Parameters
        ----------
        command
            the command to describe (default: all of them)
        """
        group, path = app, ["relay"]
        for name in command:
            if group.default_command is not None:  # a leaf: later words are ignored (spec §1.1)
                break
            if name not in group:
                raise UsageError(f'unknown command "{name}" for "{" ".join(path)}"')
            group, path = group[name], [*path, name]
        app.help_print(path[1:])
        return 0

    return help_


def run(argv: Iterable[str] | None = None, *, launcher: App | None = None) -> int:
    """Run the command line and return the exit status; never lets a traceback reach the user.

    Without `launcher`, builds the app for this environment: node-locked when a lock is installed.
    """
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        if launcher is None:
            try:
                launcher = create_app(lock=installed_lock())
            except UnlockError as exc:
                Output().fatal(f"failed to unlock relay: {exc}")
                return 1
        result = launcher(tokens, result_action="return_value")
        if sys.stdout is not None:  # None: started with stdout closed (`relay version >&-`)
            sys.stdout.flush()
    except (CycloptsError, UsageError) as exc:
        Output().fatal(_one_line(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`relay ls | head -1`); stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        Output().error(
            f"unexpected {type(exc).__name__}: {_one_line(exc)} (run with -vvvv for details)"
        )
        return 1
    return result if isinstance(result, int) else 0
