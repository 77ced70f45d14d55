"""Cycle configuration: one YAML file, validated by pydantic.

`configs/demo.yaml` is the default; `configs/test.yaml` shrinks everything for fast tests. A user with
their own logs changes `experts` and `source` only.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[3]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


LOG_SOURCES_GROUP = "flywheel.log_sources"  # where log source plug-ins register (core.log_sources)


class SourceConfig(_Strict):
    """Where production logs come from."""

    kind: str = Field(
        default="demo",
        description=f"a log source registered in the `{LOG_SOURCES_GROUP}` entry point group: `files`, "
        "`demo`, or a plug-in's",
    )
    paths: list[str] = Field(
        default_factory=list,
        description="JSONL/Parquet files or folders (kind=files); relative: from where `flywheel cycle` runs",
    )
    n_interactions: int = Field(default=1200, ge=10)
    weeks: int = Field(default=6, ge=1)
    start: str = "2026-09-07"

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        kinds = sorted({point.name for point in entry_points(group=LOG_SOURCES_GROUP)})
        if kind not in kinds:
            raise ValueError(f"unknown log source {kind!r}; registered: {', '.join(kinds) or 'none'}")
        return kind

    @model_validator(mode="after")
    def _files_need_paths(self) -> SourceConfig:
        if self.kind == "files" and not self.paths:
            raise ValueError("source.kind=files needs source.paths")
        return self

    def resolved_paths(self, base: str | Path) -> list[Path]:
        """`paths` as absolute paths; a relative one (`logs/`) is taken from `base`, which the cycle runner
        sets to the folder `flywheel cycle` was started in (notebooks run elsewhere, in their own folder)."""
        return [Path(os.path.abspath(Path(base) / Path(p).expanduser())) for p in self.paths]


class StoreConfig(_Strict):
    """The interaction store. `url` may be overridden by the FLYWHEEL_STORE_URL environment variable
    (the place for a team database URL with a password)."""

    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: runs/store-<name>.db (SQLite)"
    )


class PiiConfig(_Strict):
    """PII masking of the question text (and comments) before anything leaves the store."""

    keep_original: bool = Field(
        default=False, description="keep the unmasked text in the store (interactions.query, request_json)"
    )
    employee_id_pattern: str = Field(
        default=r"\b(?:EMP|emp|E)-?\d{5,8}\b", description="regular expression of your employee ids"
    )
    phone_region: str = Field(default="US", description="region for phone numbers written without +country")
    person_names: bool = Field(default=True, description="mask person names with spaCy NER (offline model)")
    keep_terms: list[str] = Field(
        default_factory=list, description="terms never masked as names: your product and office names"
    )

    @model_validator(mode="after")
    def _pattern_compiles(self) -> PiiConfig:
        import re

        try:
            re.compile(self.employee_id_pattern)
        except re.error as err:
            raise ValueError(f"collect.pii.employee_id_pattern does not compile: {err}") from None
        return self


class SignalsConfig(_Strict):
    """Implicit feedback derived after ingestion (flywheel.collect.signals)."""

    window_minutes: float = Field(default=10.0, gt=0, description="how soon a follow-up counts")
    rephrase_similarity: float = Field(default=0.75, gt=0, le=1, description="MiniLM cosine for a rephrase")
    model: str = Field(default="minilm-l6", description="embedding model source (flywheel.core.weights)")
    escalation_pattern: str = Field(
        default=(
            r"\b(?:talk|speak|chat|connect|escalate|transfer|put)\b.{0,30}?"
            r"\b(?:human|person|someone|somebody|agent|representative|help ?desk)\b"
            r"|\b(?:real|actual|live) (?:human|person|agent)\b|\b(?:open|file|raise) a ticket\b"
        ),
        description="regular expression (case-insensitive): a comment or follow-up asking for a person",
    )


class DriftConfig(_Strict):
    """The drift monitor (flywheel.collect.drift) and `flywheel status`."""

    window: str = Field(default="W-SUN", description="pandas period of a window (weekly, Monday to Sunday)")
    alpha: float = Field(default=0.01, gt=0, lt=1, description="significance level of each test")
    min_window_size: int = Field(default=30, ge=1, description="smaller windows are not tested")
    min_new_feedback: int = Field(default=100, ge=1, description="new feedback that warrants a new cycle")


class CollectConfig(_Strict):
    pii: PiiConfig = Field(default_factory=PiiConfig)
    max_query_chars: int = Field(
        default=200_000, ge=1, description="a longer user message is quarantined at ingestion, not masked"
    )
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)


# How the review budget is spent (flywheel.triage.budget), in the order unused share flows on
REVIEW_POLICIES = ("audit", "judge_flag", "uncertainty", "unsatisfied")


class ReviewConfig(_Strict):
    """How unsatisfactory interactions get expert answers, and how many records the experts review per cycle
    (`budget`, audit and triage together; null: no cap) chosen by which `policies` (shares of the budget)."""

    mode: Literal["wait", "simulate"] = Field(
        default="simulate",
        description="wait: pause until experts answer in Argilla; simulate: the demo's simulated panel",
    )
    simulated_error_rate: float = Field(default=0.05, ge=0, le=1)
    experts_per_record: int = Field(default=1, ge=1, description="answers per record (overlap for agreement)")
    argilla_url_env: str = Field(default="ARGILLA_API_URL", description="env var with a team Argilla's URL")
    argilla_api_key_env: str = Field(default="ARGILLA_API_KEY", description="env var with its API key")
    workspace: str = "flywheel"
    dataset: str | None = Field(default=None, description="default: <config name>-review-<store hash>")
    budget: int | None = Field(
        default=None, ge=0, description="records the experts review per cycle, audit + triage; null: no cap"
    )
    policies: dict[str, float] = Field(
        default_factory=lambda: {"audit": 0.5, "judge_flag": 0.3, "uncertainty": 0.2},
        description="shares of the budget per policy (REVIEW_POLICIES), summing to 1; a policy listed with "
        "share 0 takes only what the policies before it leave",
    )

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, policies: dict[str, float]) -> dict[str, float]:
        if unknown := sorted(set(policies) - set(REVIEW_POLICIES)):
            raise ValueError(f"unknown review policy {unknown}: one of {list(REVIEW_POLICIES)}")
        if negative := sorted(name for name, share in policies.items() if not share >= 0):
            raise ValueError(f"review policy shares must be >= 0, got {negative}")
        if abs(sum(policies.values()) - 1) > 1e-9:
            total = sum(policies.values())
            raise ValueError(f"review policy shares must sum to 1, got {total:g}: {policies}")
        return policies


class LLMJudgeConfig(_Strict):
    """The LLM judge: an endpoint or a local transformers chat model (a model source or folder)."""

    endpoint: EndpointConfig | None = None
    local_model: str | None = None
    max_retries: int = Field(default=2, ge=0, description="re-asks after a malformed verdict, then unparsed")
    max_new_tokens: int = Field(default=160, ge=8)
    max_items: int | None = Field(default=None, ge=1, description="judge only the first N queued (slow)")

    @model_validator(mode="after")
    def _one_model(self) -> LLMJudgeConfig:
        if (self.endpoint is None) == (self.local_model is None):
            raise ValueError("judges.llm needs exactly one of endpoint or local_model")
        return self


class EmbeddingJudgeConfig(_Strict):
    """The embedding judge: a neighbour vote among satisfactory interactions."""

    model: str = "minilm-l6"
    k: int = Field(default=15, ge=1)
    routing_threshold: float = Field(default=0.5, ge=0, le=1, description="vote share to flag a misroute")
    comment_routing_threshold: float = Field(
        default=0.4, ge=0, le=1, description="the same when the comment says it went to the wrong team"
    )
    out_of_scope_quantile: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="out of scope: farther from the satisfactory questions than"
        " this share of them are from each other (their nearest-neighbour similarity quantile)",
    )
    out_of_scope_similarity: float | None = Field(
        default=None, ge=-1, le=1, description="a fixed similarity cut instead of the quantile"
    )
    batch_size: int = Field(default=64, ge=1)


class JudgesConfig(_Strict):
    """Which judges attribute a cause to each unsatisfactory interaction before expert review."""

    run: list[Literal["embedding", "llm"]] = Field(default_factory=lambda: ["embedding"])
    embedding: EmbeddingJudgeConfig = Field(default_factory=EmbeddingJudgeConfig)
    llm: LLMJudgeConfig | None = None

    @model_validator(mode="after")
    def _llm_configured(self) -> JudgesConfig:
        if "llm" in self.run and self.llm is None:
            raise ValueError("judges.run names llm but judges.llm is not configured")
        return self


class AuditConfig(_Strict):
    """Each cycle, a random sample of the interactions not audited before (stratified by week, blind to the
    feedback and to the production router's decision) goes to the experts: the unbiased test and validation
    splits are drawn from it, never from labels derived from the production router."""

    size: int = Field(default=400, ge=0, description="interactions sampled per cycle; 0: none")
    experts_per_record: int = Field(
        default=3, ge=1, description="independent answers per audited item; the label is their majority"
    )
    validation_share: float = Field(
        default=0.3, ge=0, lt=1, description="of each cycle's sample: validation (thresholds, early stopping)"
    )
    newest_weeks: int | None = Field(
        default=None,
        ge=1,
        description="draw only from the newest this many ISO weeks not audited yet (e.g. the weeks since the "
        "last cycle, which a flywheel's gate judges); null: all weeks, each by its share",
    )


class SplitConfig(_Strict):
    """How the logs become training examples (the test and validation splits come from the audit)."""

    teacher_labels: list[Literal["satisfied", "no_feedback"]] = Field(
        default_factory=lambda: ["satisfied", "no_feedback"],
        description="interactions without an expert label whose production decision is a teacher label",
    )
    teacher_weight: float = Field(
        default=1.0, gt=0, le=1, description="weight of a teacher-labelled example (an expert label: 1)"
    )
    near_duplicate_threshold: float | None = Field(
        default=0.95,
        gt=0,
        le=1,
        description="MiniLM cosine similarity making two texts one; null: off",
    )
    production_model: str | None = Field(
        default=None,
        description="the production model's name in the logs (teacher labels and the eval's baseline come "
        "only from its decisions); null: the model of the earliest logged interaction",
    )


class EndpointConfig(_Strict):
    """An OpenAI-compatible chat-completions endpoint. The API key is read from the environment variable
    named by `api_key_env` (never written in a config)."""

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    model: str
    api_key_env: str | None = Field(default=None, description="name of the env variable holding the key")
    timeout_s: float = Field(default=60.0, gt=0)
    # evaluation prices the endpoint's reported token usage with these (else: the wait x hardware price)
    usd_per_m_tokens_in: float | None = Field(default=None, ge=0)
    usd_per_m_tokens_out: float | None = Field(default=None, ge=0)
    price_note: str | None = Field(default=None, description="where the prices come from")


# Set by the workbench for every trainer: the run directory and the config's `seed`.
WORKBENCH_TRAINER_KEYS = ("output_dir", "seed", "data_seed")


class CandidateConfig(_Strict):
    """One candidate router: what it is (the keys below) and its recipe (every other key).

    Recipe keys pass through unmapped, as in alignment-handbook's recipes: fields of transformers'
    `TrainingArguments` (encoder classifiers) or trl's `SFTConfig` (causal LMs), and of peft's `LoraConfig`
    (method lora: `r`, `lora_alpha`, `target_modules`, ...) or `PromptTuningConfig` (method prompt_tuning:
    `num_virtual_tokens`, ...). They are checked against those classes when the finetune stage starts (the
    classes take seconds to import): an unknown key is an error naming it (flywheel.finetune.recipes).

    kind=causal_lm (trl SFT, see flywheel.finetune.sft): methods lora / full / prompt_tuning train;
    zero_shot / few_shot need no training. `decision` says how the router decides (label scoring or greedy
    generation). kind=setfit: fields of `setfit.TrainingArguments`. The scikit-learn kinds take the few keys
    of `SKLEARN_RECIPE_KEYS`, each mapped onto the estimator's own parameter (flywheel.finetune.linear).
    kind=ensemble: soft voting over `members` (earlier candidates), with optional `weights`; no recipe."""

    model_config = ConfigDict(extra="allow")  # the recipe

    SKLEARN_RECIPE_KEYS: ClassVar[dict[str, dict[str, str]]] = {
        "tfidf_logreg": {
            "Cs": "LogisticRegressionCV.Cs: the C grid (a list) or its size (log grid 1e-4..1e4)",
            "cv": "LogisticRegressionCV.cv: stratified, seeded folds",
            "max_iter": "LogisticRegressionCV.max_iter",
            "class_weight": "LogisticRegressionCV.class_weight: null or balanced",
            "ngram_range": "the word TfidfVectorizer's ngram_range, e.g. [1, 2]",
            "char_ngram_range": "the char_wb TfidfVectorizer's ngram_range, e.g. [2, 5]",
            "min_df": "both TfidfVectorizers' min_df",
            "sublinear_tf": "both TfidfVectorizers' sublinear_tf",
        },
        "embedding_logreg": {
            "Cs": "LogisticRegressionCV.Cs: the C grid (a list) or its size (log grid 1e-4..1e4)",
            "cv": "LogisticRegressionCV.cv: stratified, seeded folds",
            "max_iter": "LogisticRegressionCV.max_iter",
            "class_weight": "LogisticRegressionCV.class_weight: null or balanced",
        },
    }

    name: str
    kind: Literal[
        "tfidf_logreg",
        "embedding_logreg",
        "setfit",
        "encoder_classifier",
        "causal_lm",
        "endpoint",
        "ensemble",
    ]
    model: str | None = Field(
        default=None,
        description="model source: minilm-l6, smollm2-135m-instruct, tiny-llama, a folder, a hub id",
    )
    method: Literal["full", "lora", "prompt_tuning", "zero_shot", "few_shot"] = "full"
    max_length: int = Field(
        default=64,
        ge=1,
        description="tokens per example (SFTConfig.max_length, encoder truncation, inference)",
    )
    prompt_style: Literal["short", "long", "minimal"] = "short"
    decision: Literal["score", "generate"] = "score"
    few_shot_k: int = Field(default=4, ge=1)
    few_shot_max_tokens: int = Field(default=256, ge=16)
    time_budget_s: float | None = Field(
        default=None, gt=0, description="training time budget: steps/epochs/trials derived within it"
    )
    min_epochs: float | None = Field(
        default=None,
        gt=0,
        description="epochs that always run whatever time_budget_s says (results that do not depend on load)",
    )
    search_trials: int = Field(default=0, ge=0, description="seeded hyper-parameter search trials (0: none)")
    # endpoint only: a model hosted elsewhere (NIM, vLLM, OpenAI), evaluated by generation; nothing trains
    endpoint: EndpointConfig | None = None
    # ensemble only: soft voting over earlier candidates (their probabilities averaged); nothing more trains
    members: list[str] | None = Field(
        default=None, description="ensemble: the names of earlier candidates whose probabilities it averages"
    )
    weights: list[float] | None = Field(
        default=None, description="ensemble: one positive weight per member (default: equal weights)"
    )

    @property
    def recipe(self) -> dict[str, Any]:
        """The pass-through keys: trainer and peft arguments."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _methods_fit_kind(self) -> CandidateConfig:
        if self.kind != "causal_lm" and self.method not in ("full", "lora"):
            raise ValueError(f"{self.name}: method {self.method!r} is for causal_lm candidates only")
        if (self.kind == "endpoint") != (self.endpoint is not None):
            raise ValueError(f"{self.name}: `endpoint` is required for kind endpoint, and only for it")
        if (self.kind == "ensemble") != (self.members is not None):
            raise ValueError(f"{self.name}: `members` is required for kind ensemble, and only for it")
        if self.weights is not None and self.kind != "ensemble":
            raise ValueError(f"{self.name}: `weights` is for kind ensemble only")
        if self.kind == "ensemble":
            self._check_members()
        if self.kind == "causal_lm" and not self.model:
            raise ValueError(f"{self.name}: a causal_lm candidate needs `model` (a model source)")
        if self.recipe and self.kind in ("endpoint", "ensemble"):
            raise ValueError(
                f"{self.name}: unknown key(s) {sorted(self.recipe)}: a {self.kind} candidate takes no "
                "trainer arguments"
            )
        if self.search_trials and self.kind in ("causal_lm", "endpoint", "ensemble"):
            raise ValueError(f"{self.name}: search_trials is not available for {self.kind} candidates")
        known = self.SKLEARN_RECIPE_KEYS.get(self.kind)
        if known is not None and set(self.recipe) - set(known):
            raise ValueError(
                f"{self.name}: unknown key(s) {sorted(set(self.recipe) - set(known))}: a {self.kind} "
                f"candidate takes {sorted(known)}"
            )
        reserved = sorted(set(self.recipe) & set(WORKBENCH_TRAINER_KEYS))
        if reserved:
            raise ValueError(f"{self.name}: {reserved} are set by the workbench (run directory, config seed)")
        return self

    def _check_members(self) -> None:
        members = self.members or []
        if len(members) < 2 or len(set(members)) != len(members):
            raise ValueError(f"{self.name}: an ensemble needs two or more distinct members, got {members}")
        if self.weights is not None and (
            len(self.weights) != len(members) or any(not w > 0 for w in self.weights)
        ):
            raise ValueError(f"{self.name}: `weights` needs one positive weight per member ({len(members)})")


class AblationConfig(_Strict):
    """The label-source ablation: `candidate` (a cheap one) trained again on the expert-labelled examples
    only and on expert + satisfied-teacher ones; the eval stage scores each on the test split."""

    candidate: str = Field(description="the name of one of `candidates`")


class PriceConfig(_Strict):
    """Prices behind the cost model; each says where it came from."""

    hardware_usd_per_hour: float = Field(gt=0)
    hardware_note: str
    baseline_usd_per_m_tokens_in: float = Field(gt=0)
    baseline_usd_per_m_tokens_out: float = Field(gt=0)
    baseline_note: str


class EvalConfig(_Strict):
    latency_queries: int = Field(default=100, ge=5, description="queries timed at batch 1 per candidate")
    warmup_queries: int = Field(default=5, ge=0)
    ttft_queries: int = Field(default=20, ge=0, description="queries timed to the first token (causal LMs)")
    max_drop_points: float = 2.0
    cascades: bool = Field(
        default=True,
        description="also score each student deferring its least confident queries to the production model",
    )
    cascade_drop_points: float | None = Field(
        default=None,
        ge=0,
        description="a cascade's threshold: the least deferral within this many points of production on "
        "validation; default max_drop_points",
    )
    cascade_confidence: float | None = Field(
        default=0.9,
        gt=0.5,
        lt=1,
        description="the threshold's deferral must hold cascade_drop_points on the upper one-sided bound of "
        "the paired drop at this confidence (deferrals tested from most to least); null: on the point "
        "estimate, an optimistic pick on a small validation split",
    )
    cost_tie_share: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="eligible candidates whose cost per 1k is within this share of production's of the "
        "cheapest count as equally cheap: the most accurate of them is promoted (measured latencies, hence "
        "students' costs, vary with the machine's load)",
    )
    alpha: float = 0.05
    prices: PriceConfig
    promote_via: Literal["registry", "shadow"] = Field(
        default="registry",
        description="registry: the chosen candidate is promoted at once; shadow: it goes in shadow first "
        "(the service logs its decisions beside the router in service; promoted or rejected after its week)",
    )

    @property
    def cascade_target_points(self) -> float:
        return self.max_drop_points if self.cascade_drop_points is None else self.cascade_drop_points


class ServeConfig(_Strict):
    """The router service (`flywheel serve`) and the feedback form."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    default_model: str | None = Field(
        default=None,
        description="trained candidate folder served until one is promoted (relative: repo root)",
    )
    max_request_bytes: int = Field(default=65536, ge=1024, description="larger request bodies get 413")
    api_key_env: str = Field(
        default="FLYWHEEL_SERVE_API_KEY",
        description="env var with the service's API key (Bearer); required to bind beyond localhost",
    )
    # the production model's OpenAI-compatible endpoint: while it serves (nothing promoted and no
    # default_model, or rolled back to it), the service and the form route through it; null: 503
    production_endpoint: EndpointConfig | None = None
    production_shadow_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of the queries a small router answered that the production endpoint also decides "
        "in shadow, after the answer (teacher labels and agreement keep coming); sampled by interaction id",
    )


class GateConfig(_Strict):
    """The online gate of `flywheel run`: a candidate's shadow week and the router in service, judged each
    week on that week's audited items (expert labels) against the production model's accuracy on the
    unbiased test minus `max_drop_points`."""

    max_drop_points: float | None = Field(
        default=None, ge=0, description="default: eval.max_drop_points (the offline promotion margin)"
    )
    min_agreement: float = Field(
        default=0.85, ge=0, le=1, description="a shadow candidate's least agreement with the router serving"
    )
    min_reviewed: int = Field(
        default=20, ge=1, description="fewer audited items that week: no verdict, the shadow goes on"
    )


class FlywheelConfig(_Strict):
    """`flywheel run`: weeks of an organisation's traffic through the real parts (the demo world)."""

    weeks: int = Field(default=12, ge=1)
    n_interactions: int = Field(
        default=4800, ge=10, description="over all the weeks (the launch week has more)"
    )
    shadow_week: bool = Field(
        default=True, description="a candidate that passes offline serves a week in shadow before promotion"
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    kernel: str | None = Field(default=None, description="Jupyter kernel for the cycles (default: flywheel)")


class TrackingConfig(_Strict):
    """MLflow experiment tracking of cycles and flywheel runs (flywheel.core.tracking). The store: the
    `MLFLOW_TRACKING_URI` environment variable (a team's server), else a SQLite file beside the runs
    (`<runs folder>/mlflow.db`, artifacts in `<runs folder>/mlartifacts/`)."""

    enabled: bool = True
    experiment: str | None = Field(default=None, description="MLflow experiment; default flywheel-<name>")
    max_model_mb: float = Field(
        default=100.0,
        ge=0,
        description="a candidate folder up to this size is logged as an MLflow model (pyfunc router); "
        "larger ones only by their card, training record and curves",
    )


class Config(_Strict):
    name: str
    seed: int = 7
    experts: dict[str, str] = Field(min_length=2)
    source: SourceConfig = Field(default_factory=SourceConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    judges: JudgesConfig = Field(default_factory=JudgesConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    candidates: list[CandidateConfig] = Field(min_length=1)
    ablation: AblationConfig | None = None
    eval: EvalConfig
    serve: ServeConfig = Field(default_factory=ServeConfig)
    flywheel: FlywheelConfig | None = None  # `flywheel run` only
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _unique_candidate_names(self) -> Config:
        names = [c.name for c in self.candidates]
        if len(names) != len(set(names)):
            raise ValueError(f"candidate names must be unique: {names}")
        for position, candidate in enumerate(self.candidates):
            if candidate.kind != "ensemble":
                continue
            earlier = {c.name: c.kind for c in self.candidates[:position]}
            for member in candidate.members or []:
                if member not in earlier:
                    raise ValueError(
                        f"{candidate.name}: member {member!r} is not a candidate listed before it "
                        f"(an ensemble's members train first): {sorted(earlier)}"
                    )
                if earlier[member] in ("endpoint", "ensemble"):
                    raise ValueError(
                        f"{candidate.name}: member {member!r} is a {earlier[member]} candidate; members are "
                        "trained routers that give probabilities"
                    )
        return self

    def store_url(self, runs_root: Path) -> str:
        """The store URL in force: environment, then config, then a SQLite file beside the runs."""
        url = os.environ.get("FLYWHEEL_STORE_URL") or self.store.url
        if url:
            return url
        # One store per config name, so the demo and the tiny test world never mix.
        return f"sqlite:///{(Path(runs_root) / f'store-{self.name}.db').resolve()}"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (resolving `extends`); `overrides` is a nested dict merged on top the same way
    (e.g. from notebook parameters)."""
    raw = read_config_mapping(path)
    if overrides:
        raw = _deep_merge(raw, overrides)
    return Config.model_validate(raw)


REPLACED_WHOLE = ("experts",)  # top-level mappings an overlay replaces instead of merging into


def read_config_mapping(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's YAML mapping with `extends: <base file>` (relative to this file) resolved: this
    file's keys are merged into the base's, mappings key by key; anything else replaces the base's value
    whole: lists (`candidates`) and the expert catalog (`experts`, a catalog is never mixed with another)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if path.resolve() in _seen:
        raise ValueError(f"{path}: `extends` loops back to itself")
    merged = _deep_merge(read_config_mapping(path.parent / base, (*_seen, path.resolve())), raw)
    return merged | {key: raw[key] for key in REPLACED_WHOLE if key in raw}


def config_text(path: str | Path) -> str:
    """The config as a self-contained YAML text (what a run directory keeps): the file as written, or for
    one that `extends` another, its resolved mapping."""
    path = Path(path)
    text = path.read_text()
    raw = yaml.safe_load(text)
    if not (isinstance(raw, dict) and "extends" in raw):
        return text
    resolved = yaml.safe_dump(read_config_mapping(path), sort_keys=False, allow_unicode=True, width=110)
    return f"# {path.name} with `extends: {raw['extends']}` resolved\n{resolved}"


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
