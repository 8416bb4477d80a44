"""Write a small pure-Python wheel with the standard library (PEP 427 / PEP 376 RECORD).

Used by `relay lock build`, which must work offline on the vendor's machine without a build
backend. The archive is reproducible: entries are sorted and dated 1980-01-01.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["write_wheel"]

_EPOCH = (1980, 1, 1, 0, 0, 0)


def _escape(name: str) -> str:
    """A wheel filename component: runs of ``-_.`` become ``_`` (PEP 427)."""
    return re.sub(r"[-_.]+", "_", name)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def write_wheel(
    directory: Path,
    *,
    name: str,
    version: str,
    summary: str,
    files: Mapping[str, bytes],
    entry_points: Mapping[str, Mapping[str, str]],
    requires: Sequence[str] = (),
    requires_python: str = ">=3.11",
    generator: str = "relay-cli",
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into `directory`; return its path.

    `files` maps archive paths (e.g. ``relay_lock/__init__.py``) to content; `entry_points`
    maps group -> {name: "module:attr"}.
    """
    dist_info = f"{_escape(name)}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
        f"Requires-Python: {requires_python}",
        *(f"Requires-Dist: {req}" for req in requires),
    ]
    wheel = [
        "Wheel-Version: 1.0",
        f"Generator: {generator}",
        "Root-Is-Purelib: true",
        "Tag: py3-none-any",
    ]
    groups = [
        "\n".join([f"[{group}]", *(f"{key} = {value}" for key, value in sorted(points.items()))])
        for group, points in sorted(entry_points.items())
    ]
    contents: dict[str, bytes] = dict(files)
    contents[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    contents[f"{dist_info}/WHEEL"] = ("\n".join(wheel) + "\n").encode()
    contents[f"{dist_info}/entry_points.txt"] = ("\n\n".join(groups) + "\n").encode()
    record_path = f"{dist_info}/RECORD"
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in sorted(contents.items())]
    record.append(f"{record_path},,")
    contents[record_path] = ("\n".join(record) + "\n").encode()

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{_escape(name)}-{version}-py3-none-any.whl"
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # The package first, then the .dist-info, RECORD last (as wheel builders order them).
        package = sorted(p for p in contents if not p.startswith(dist_info + "/"))
        metadata_files = sorted(p for p in contents if p.startswith(dist_info + "/"))
        metadata_files.remove(record_path)
        for path in [*package, *metadata_files, record_path]:
            info = zipfile.ZipInfo(path, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, contents[path])
    partial.replace(target)
    return target
