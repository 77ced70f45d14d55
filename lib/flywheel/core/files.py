"""Files that are never seen half-written: every atomic write in the workbench goes through `atomic_path`.

The new content goes to a temporary name in the target's folder and is renamed over the target only once
complete, so a reader (or a resumed cycle after a kill) sees the old file or the whole new one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the new file to (it does not exist yet). When the block ends without an
    error it replaces `path`; after an error it is removed and `path` is untouched. The temporary name
    keeps the target's suffix, for writers that add one when missing (`numpy.savez`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """Write `data` atomically; `private`: readable by the owner only (0600) from its first byte."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | Path, text: str, *, private: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), private=private)


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Indented, keys sorted, values JSON does not know as strings (dates, paths)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
