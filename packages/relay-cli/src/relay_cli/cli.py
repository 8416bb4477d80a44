"""The cyclopts app and its meta launcher: the one composition root of the `relay` process.

The launcher parses the global flags, picks the store through the ``relay.storage`` entry points,
and injects a `Runtime` (settings, printers, clock, lazily opened store and `Relay`) into the
command, whose thin function only validates its own flags, calls the service and prints. Every
failure becomes one ``error: <message>`` line on stderr and exit status 1.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from cyclopts import App, CycloptsError, Parameter, UnusedCliTokensError

from . import __version__
from .audit import logs
from .licenses import add, delete, ls, stat
from .logsetup import configure_logging
from .output import Output, color_wanted
from .runtime import Runtime, Settings, UsageError, parse_pragmas
from .server import serve
from .values import env_bool, env_str

if TYPE_CHECKING:
    from relay_core.ports import Clock

    from .storage import StoreOpener

__all__ = ["app", "create_app", "run"]

log = logging.getLogger("relay.cli")

HELP = """relay is a small command line utility that distributes license files to nodes on a local network

Keygen Relay CLI, version {version}."""


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, UnusedCliTokensError) and exc.unused_tokens:
        return "unexpected argument(s): " + " ".join(exc.unused_tokens)
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


def create_app(
    *,
    open_store: StoreOpener | None = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> App:
    """Build the `relay` command line; returns the launcher (meta app) to call with argv.

    `open_store`, `clock` and `environ` default to the ``relay.storage`` entry points, the
    system clock and `os.environ`; tests pass fakes here instead of patching anything.
    """
    app = App(
        name="relay",
        help=HELP.format(version=__version__),
        version=f"relay version {__version__}",
        version_format="plaintext",
        exit_on_error=False,
        print_error=False,
        help_on_error=False,
    )
    app.command(add)
    app.command(completion_command(app), name="completion")
    app.command(delete, name="del")
    app.command(help_command(app), name="help")
    app.command(logs)
    app.command(ls)
    app.command(serve)
    app.command(stat)
    app.command(version)

    @app.meta.default
    def launcher(
        *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
        database: str | None = None,
        verbose: Annotated[
            int, Parameter(name=["--verbose", "-v"], count=True, show_default=False)
        ] = 0,
        no_audit: Annotated[bool | None, Parameter(negative="")] = None,
        no_color: Annotated[bool, Parameter(negative="", show_default=False)] = False,
        pragma: Annotated[list[str] | None, Parameter(negative="")] = None,
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
        """
        env = os.environ if environ is None else environ
        out = Output(color=color_wanted(env, no_color=no_color))
        log_color = not no_color and not env.get("NO_COLOR") and _is_terminal(sys.stderr)
        configure_logging(verbose, env, color=log_color)
        try:
            command, bound, ignored = app.parse_args(tokens)
            settings = Settings(
                database=database
                if database is not None
                else env_str(env, "RELAY_DATABASE") or "./relay.sqlite",
                verbosity=verbose,
                audit=not (no_audit if no_audit is not None else env_bool(env, "RELAY_NO_AUDIT")),
                color=out.color,
                pragmas=parse_pragmas(pragma or []),
            )
        except (CycloptsError, UsageError) as exc:
            out.error(_one_line(exc))
            return 1

        if "runtime" not in ignored:  # help, version, completion: nothing to open
            try:
                result = command(*bound.args, **bound.kwargs)
            except UsageError as exc:
                out.error(str(exc))
                return 1
            return result if isinstance(result, int) else 0

        from relay_core import BulkError, RelayError
        from relay_core.service import SystemClock

        from .storage import open_store as entry_point_opener

        runtime = Runtime(
            settings, env, clock or SystemClock(), open_store or entry_point_opener, out
        )
        status = 1
        try:
            result = command(*bound.args, **bound.kwargs, runtime=runtime)
            status = result if isinstance(result, int) else 0
        except UsageError as exc:
            out.error(str(exc))
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

    return app.meta


def version() -> int:
    """print the current relay version"""
    sys.stdout.write(__version__ + "\n")
    return 0


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
        if command and command[0] not in app:
            raise UsageError(f'unknown command "{command[0]}" for "relay"')
        app.help_print(list(command))
        return 0

    return help_


def run(argv: Iterable[str] | None = None, *, launcher: App | None = None) -> int:
    """Run the command line and return the exit status; never lets a traceback reach the user."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    launcher = app if launcher is None else launcher
    try:
        result = launcher(tokens, result_action="return_value")
        sys.stdout.flush()
    except (CycloptsError, UsageError) as exc:
        Output().error(_one_line(exc))
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


app = create_app()
