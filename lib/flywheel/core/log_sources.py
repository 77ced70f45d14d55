"""Where a cycle's production logs come from: one plug-in per `source.kind`.

A log source is registered as a Python entry point in the `flywheel.log_sources` group (pyproject.toml:
`files` reads the configured paths, `demo` generates the seeded synthetic world); a package of your own adds
a kind the same way. Besides the log files, a synthetic source may know the truth behind them: the hidden
labels (used only to score the judges, labelled as such) and a simulated expert panel that answers the
review in Argilla (`review.mode: simulate`). Real logs have neither.

Raw logs never go into a run directory (it is meant to be shared, and logs hold unmasked PII): the manifest
records their absolute paths and sha256 instead (`input_hashes`).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flywheel.core.config import LOG_SOURCES_GROUP as ENTRY_POINT_GROUP
from flywheel.core.runs import file_sha256

if TYPE_CHECKING:
    from flywheel.core.config import Config
    from flywheel.core.runs import RunDir

SIMULATED_PREFIX = "simulated-expert-"  # the simulated panel's Argilla account names


class SimulatedPanel(Protocol):
    """Simulated experts who answer the review through the Argilla API as annotators."""

    reviewers: list[str]

    def answer_in_argilla(self, session: Any) -> dict[str, int]: ...


class LogSource(Protocol):
    def log_files(self, config: Config, run: RunDir) -> list[Path]:
        """The cycle's log files (resolved, or generated), recording in the manifest where they came from."""
        ...

    def hidden_truth(self, run: RunDir) -> Path | None:
        """The true expert and cause of each interaction (JSONL), if the source knows them; scoring only."""
        ...

    def simulated_panel(self, config: Config, run: RunDir, task: str = "triage") -> SimulatedPanel | None:
        """The experts that answer one review task (triage or audit) for `review.mode: simulate`, if the
        source has any."""
        ...


def registered_kinds() -> list[str]:
    return sorted({point.name for point in entry_points(group=ENTRY_POINT_GROUP)})


def log_source(kind: str) -> LogSource:
    """The log source registered under `kind`."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=kind)
    if not found:
        raise LookupError(
            f"no log source {kind!r} in the entry point group {ENTRY_POINT_GROUP!r} (registered: "
            f"{', '.join(registered_kinds()) or 'none'}); after editing pyproject.toml, "
            "`pip install --no-deps -e .` registers its entry points"
        )
    return next(iter(found)).load()()


def input_hashes(files: list[Path]) -> dict[str, str]:
    """Absolute path -> sha256 of each input file: what the manifest keeps instead of a copy."""
    return {str(Path(path).resolve()): file_sha256(path) for path in files}
