"""What one stage hands the next: a typed result per stage, written to `results/<stage>.json` in the run
directory and read back here. Stages never import each other; they read each other's results through these
models, so a renamed or missing field fails loudly where it is read instead of deep inside a later stage."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from flywheel.core.runs import atomic_write_json, now_iso, read_json

if TYPE_CHECKING:
    from flywheel.core.runs import RunDir


class StageResult(BaseModel):
    """Base of every stage's result. `stage` is the notebook's name (`02_triage`); the subclass says it."""

    model_config = ConfigDict(extra="forbid")

    stage: ClassVar[str]
    recorded_at: str = Field(default_factory=now_iso)
    peak_rss_mb: float = Field(default=0.0, description="peak memory of the process that recorded it")


Result = TypeVar("Result", bound=StageResult)


def write_result(run: RunDir, result: StageResult) -> Path:
    """The result as `results/<stage>.json`, with the recording process's peak memory (in a cycle: the
    stage's own kernel)."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    result = result.model_copy(update={"recorded_at": now_iso(), "peak_rss_mb": round(peak_mb, 1)})
    path = run.results_path(result.stage)
    atomic_write_json(path, {"stage": result.stage, **result.model_dump(mode="json")})
    return path


def read_result(run: RunDir, kind: type[Result]) -> Result:
    """The result a stage recorded, validated against its model; a clear error when it has not run yet."""
    path = run.results_path(kind.stage)
    if not path.exists():
        raise FileNotFoundError(f"stage {kind.stage} has recorded no results in {run.path}; run it first")
    data: dict[str, Any] = read_json(path)
    data.pop("stage", None)
    return kind.model_validate(data)
