"""The JSON converter writes bodies byte for byte as Go's json.Encoder does."""

from __future__ import annotations

import base64

from relay_core import ClaimStatus, Lease, License, Node
from relay_http.wire import error_body, go_json, lease_body


def _lease(status: ClaimStatus, key: str = "KEY-1", file: bytes = b"-----BEGIN-----\n") -> Lease:
    lic = License(1, "guid", file, key, 1, 10, None, 1, None, 5)
    node = Node(1, "fp", 10, 5, None)
    return Lease(status, lic, node, 1764949550, 60)


def test_go_json_is_compact_with_newline() -> None:
    """Objects are encoded without spaces and end with one newline."""
    assert go_json({"a": 1, "b": [True, None]}) == b'{"a":1,"b":[true,null]}\n'


def test_go_json_escapes_html_and_line_separators() -> None:
    """<, >, &, U+2028 and U+2029 are escaped as Go does; other non-ASCII stays raw UTF-8."""
    text = "<a>&\u2028\u2029é"
    assert go_json(text) == b'"\\u003ca\\u003e\\u0026\\u2028\\u2029\xc3\xa9"\n'


def test_error_body() -> None:
    """Error bodies carry only the `error` key."""
    assert error_body("claim not found") == b'{"error":"claim not found"}\n'


def test_created_body_has_file_key_and_expiry_in_order() -> None:
    """A new lease is answered with the base64 file, the key, expires_at and expires_in."""
    file = b"-----BEGIN LICENSE FILE-----\nabc\n-----END LICENSE FILE-----\n"
    body = lease_body(_lease(ClaimStatus.CREATED, key="K<1>", file=file))
    encoded = base64.b64encode(file).decode()
    assert body == (
        b'{"license_file":"' + encoded.encode() + b'","license_key":"K\\u003c1\\u003e",'
        b'"expires_at":1764949550,"expires_in":60}\n'
    )


def test_extended_body_has_only_expiry() -> None:
    """An extension is answered with expires_at and expires_in only."""
    assert (
        lease_body(_lease(ClaimStatus.EXTENDED)) == b'{"expires_at":1764949550,"expires_in":60}\n'
    )
