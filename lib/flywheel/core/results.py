"""What one stage hands the next: a typed result per stage, written to `results/<stage>.json` in the run
directory and read back here. Stages never import each other; they read each other's results through these
models, so a renamed or missing field fails loudly where it is read instead of deep inside a later stage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from flywheel.core.files import atomic_write_json, read_json
from flywheel.core.memory import peak_rss_mb
from flywheel.core.runs import now_iso

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
    result = result.model_copy(update={"recorded_at": now_iso(), "peak_rss_mb": round(peak_rss_mb(), 1)})
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


# --- 01_collect ---------------------------------------------------------------------------------------------
class CycleStatus(BaseModel):
    """What `flywheel status` said before the cycle collected."""

    should_run: bool
    reasons: list[str]
    new_feedback: int


class CollectResult(StageResult):
    stage: ClassVar[str] = "01_collect"

    ingest: dict[str, int] = Field(
        description="the ingest report: read = accepted + duplicates + quarantined"
    )
    interactions_in_store: int
    quarantined_in_store: int
    satisfied_share: float
    weeks: int
    implicit_signals: dict[str, int] = Field(description="interactions per implicit signal kind")
    drift_flagged_windows: list[str]
    status_before_cycle: CycleStatus


# --- 02_triage ----------------------------------------------------------------------------------------------
class GroundTruthRef(BaseModel):
    """Where the versioned ground truth is, and its counts; `load_split` reads a split.

    test and validation hold expert-labelled audit items only (majority of the audit's experts); train holds
    every other usable interaction, with an expert label where there is one, else the production router's
    decision as a teacher label (`label_source`, `weight`)."""

    version: str
    folder: Path
    interactions: int
    labelled: int
    audited: int = Field(description="audit items with a usable expert label (test + validation)")
    duplicates_removed: int
    exact_duplicates_removed: int
    near_duplicates_removed: int
    train: int
    validation: int
    test: int

    def load_split(self, split: str) -> pd.DataFrame:
        """`train`, `validation` or `test` as a DataFrame (id, text, label, label_source, weight,
        routed_expert, timestamp, tokens_in, tokens_out)."""
        return load_split(self.folder, split)


def load_split(folder: Path, split: str) -> pd.DataFrame:
    return pd.read_parquet(Path(folder) / f"{split}.parquet")


class ReviewSummary(BaseModel):
    """Progress and inter-expert agreement of the triage review and of the audit."""

    mode: str
    simulated: bool
    progress: dict[str, int]
    agreement: dict[str, Any]
    audit_progress: dict[str, int] = Field(default_factory=dict)
    audit_agreement: dict[str, Any] = Field(default_factory=dict)


class PolicyYield(BaseModel):
    """What one review policy bought in a cycle (flywheel.triage.budget.policy_yield)."""

    selected: int = Field(description="records it sent to the experts")
    answered: int = Field(description="of those, records with at least one expert answer")
    errors: int = Field(description="answered records whose experts' majority names another expert")
    error_share: float | None = Field(description="errors / answered; None when nothing was answered")


class ReviewBudget(BaseModel):
    """How the cycle's review budget was spent: `budget` None means no cap (the audit sample and the whole
    unsatisfactory queue, recorded as policies `audit` and `unsatisfied`)."""

    budget: int | None
    policies: dict[str, float]
    quotas: dict[str, int] = Field(default_factory=dict, description="records per policy from the shares")
    spent: dict[str, int] = Field(description="records chosen per policy, after unused share flowed on")
    reassigned: dict[str, str] = Field(default_factory=dict, description="skipped policy -> its heir")
    skipped: dict[str, str] = Field(default_factory=dict, description="policy -> why it chose nothing")
    bought: dict[str, PolicyYield] = Field(default_factory=dict, description="per policy, after the pull")


class TriageResult(StageResult):
    """While the review is awaited, only `reviewed`, `review`, `awaiting_review` and `review_budget` are
    recorded."""

    stage: ClassVar[str] = "02_triage"

    reviewed: int = Field(description="interactions with at least one expert answer")
    review: ReviewSummary
    awaiting_review: bool
    causes: dict[str, int] | None = Field(default=None, description="experts' answers on the cause")
    judges: list[dict[str, Any]] | None = Field(default=None, description="judge_scoring.score_cycle's rows")
    ground_truth: GroundTruthRef | None = None
    review_budget: ReviewBudget | None = Field(default=None, description="records per policy, and yield")

    @model_serializer(mode="wrap")
    def _omit_unfinished(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if self.awaiting_review:  # the stage's later steps have not run: no keys for them
            for key in ("causes", "judges", "ground_truth"):
                data.pop(key, None)
        if self.review_budget is None:  # a stage that chose nothing (driven without `select`)
            data.pop("review_budget", None)
        return data


# --- 03_finetune --------------------------------------------------------------------------------------------
class FinetuneResult(StageResult):
    """The trained candidates: what training reported, and the folder each one was saved in."""

    model_config = ConfigDict(ser_json_inf_nan="constants")  # a NaN loss stays NaN, as json.dumps writes it

    stage: ClassVar[str] = "03_finetune"

    candidates: dict[str, dict[str, Any]] = Field(
        description="train_candidate's record per candidate name, without its loss curve"
    )
    candidate_dirs: dict[str, Path] = Field(
        description="per candidate name: its folder (load_router reads it)"
    )
    ablation_dirs: dict[str, Path] = Field(
        default_factory=dict,
        description="the label-source ablation: per training subset (e.g. `expert`, `expert+satisfied`), "
        "one cheap student trained on it",
    )


# --- 04_eval ------------------------------------------------------------------------------------------------
class HeadlineRow(BaseModel):
    """One model's line of the eval notebook's headline table. NaN where a value does not apply (the
    baseline has no paired test, no measured size, no time to first token)."""

    model: str
    accuracy: float
    ci95: str = Field(description="the 95% Wilson interval, as printed: [low, high]")
    vs_baseline_points: float
    mcnemar_p: float | None
    p50_ms: float
    ttft_p50_ms: float | None
    cost_per_1k_usd: float
    parameters: float | None
    promoted: bool
    agreement: float | None = Field(default=None, description="share of test items decided as production did")
    deferral_share: float | None = Field(default=None, description="cascades: share deferred to production")
    hidden_truth_accuracy: float | None = Field(
        default=None, description="demo only: against the hidden truth"
    )
    unseen_template_accuracy: float | None = Field(
        default=None, description="demo only: on test items whose template no training item has"
    )
    unseen_template_ci95: str | None = None
    unseen_template_n: int | None = None


class EvalResult(StageResult):
    """The promoted candidate (None: the baseline stays) and the headline table; summary.json has the rest.

    "baseline" here is the model the logs came from: the registry calls it "production"."""

    model_config = ConfigDict(ser_json_inf_nan="constants")  # the table's NaN stay NaN, as before

    stage: ClassVar[str] = "04_eval"

    promoted: str | None
    table: list[HeadlineRow]
