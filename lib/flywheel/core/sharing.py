"""Files meant for sharing (report.html, summary.json) carry no machine paths: a path inside the run directory
becomes relative to it, the home folder `~`, the repository's root `.`, and any other absolute path keeps
only its file name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from flywheel.core.config import REPO_ROOT


def _prefixes(run_path: Path) -> list[tuple[str, str]]:
    """(machine prefix, replacement), longest first: the run directory lies in the repository or home."""
    pairs = [(str(Path(run_path).resolve()), "."), (str(REPO_ROOT.resolve()), ".")]
    home = os.path.expanduser("~")
    if home not in ("", "/"):
        pairs.append((str(Path(home).resolve()), "~"))
        pairs.append((home, "~"))
    return sorted(set(pairs), key=lambda pair: -len(pair[0]))


def shareable_text(text: str, run_path: Path) -> str:
    """`text` with the run directory's, the repository's and the home folder's paths made relative."""
    for prefix, replacement in _prefixes(run_path):
        # the whole prefix only: /work/main2 is not /work/main
        text = re.sub(re.escape(prefix) + r"(?![\w.-])", replacement, text)
    return text


def shareable(data: Any, run_path: Path) -> Any:
    """JSON-like `data` with every string made shareable; a string that is still an absolute path (outside
    the run directory, repository and home) keeps its file name only."""
    if isinstance(data, dict):
        return {key: shareable(value, run_path) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [shareable(value, run_path) for value in data]
    if isinstance(data, Path):
        data = str(data)
    if isinstance(data, str):
        text = shareable_text(data, run_path)
        if text.startswith("./"):
            return text[2:]
        if os.path.isabs(text) and "\n" not in text and " " not in text:
            return Path(text).name
        return text
    return data
