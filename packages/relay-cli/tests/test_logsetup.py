"""The log formatter: one line per event whatever a client puts in a value (spec §7 format
kept for ordinary values)."""

from __future__ import annotations

import logging
import re

import pytest
from relay_cli.logsetup import configure_logging

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DBG|INF|WRN|ERR) ")


@pytest.fixture
def log(capsys: pytest.CaptureFixture[str]) -> logging.Logger:
    logger = configure_logging(4, {}, color=False)
    capsys.readouterr()
    return logger


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_client_cannot_forge_a_line_or_a_field(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """CR/LF, NUL and undecodable bytes are escaped; a value with a space, ``"`` or ``=`` is
    quoted Go-style, so ``x y=z`` cannot pose as a field. Plain values keep Keygen Relay's
    ``msg key=value`` layout, and a traceback keeps its lines."""
    log.info(
        "HTTP request method=%s path=%s status=%s duration=%.3fms", "PUT", "/v1/nodes/a", 201, 1.5
    )
    plain = _lines(capsys)
    assert plain[0].endswith(
        " INF HTTP request method=PUT path=/v1/nodes/a status=201 duration=1.500ms"
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed x=%s", "y")
    traceback = _lines(capsys)
    assert traceback[0].endswith(" ERR failed x=y")
    assert traceback[-1] == "ValueError: boom"
    forged = "/v1/nodes/x\n2026-12-03 14:10:00 ERR forged\r\x00\udcff"
    log.warning("refused path=%s agent=%s", forged, 'a b="c"')
    log.error("%s method=%s", "no lease held by node a\nb", "PUT")
    log.info("built before logging \n fake line")
    lines = _lines(capsys)
    assert len(lines) == 3
    assert all(LINE.match(line) for line in lines)
    assert lines[0].endswith(
        ' WRN refused path="/v1/nodes/x\\n2026-12-03 14:10:00 ERR forged\\r\\u0000\\xff"'
        ' agent="a b=\\"c\\""'
    )
    assert lines[1].endswith(" ERR no lease held by node a\\nb method=PUT")
    assert lines[2].endswith(" INF built before logging \\n fake line")


def test_utf8_is_kept_and_empty_values_quoted() -> None:
    from relay_cli.logsetup import escape, quote

    assert quote("curlé/1") == "curlé/1"
    assert quote("") == '""'
    assert quote("a=b") == '"a=b"'
    assert escape("tab\there") == "tab\\there"


def test_waitress_lines_are_formatted_too(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """waitress's own warnings go through the same handler, never raw to stderr."""
    logging.getLogger("waitress").warning("%d thread(s) still running", 1)
    (line,) = _lines(capsys)
    assert LINE.match(line)
    assert line.endswith(" WRN 1 thread(s) still running")
