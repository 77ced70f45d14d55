"""Cycle configuration: one YAML file, validated by pydantic.

`configs/demo.yaml` is the default; `configs/test.yaml` shrinks everything for fast tests. A user with
their own logs changes `experts` and `source` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """Where production logs come from."""

    kind: Literal["demo", "files"] = "demo"
    paths: list[str] = Field(default_factory=list, description="JSONL/Parquet files or folders (kind=files)")
    n_interactions: int = Field(default=1200, ge=10)
    weeks: int = Field(default=6, ge=1)
    start: str = "2026-09-07"

    @model_validator(mode="after")
    def _files_need_paths(self) -> SourceConfig:
        if self.kind == "files" and not self.paths:
            raise ValueError("source.kind=files needs source.paths")
        return self


class StoreConfig(_Strict):
    """The interaction store. `url` may be overridden by the FLYWHEEL_STORE_URL environment variable
    (the place for a team database URL with a password)."""

    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: runs/store-<name>.db (SQLite)"
    )


class ReviewConfig(_Strict):
    """How unsatisfactory interactions get expert answers."""

    mode: Literal["simulate"] = "simulate"  # real experts through Argilla ("wait") come with the triage stage
    simulated_error_rate: float = Field(default=0.05, ge=0, le=1)
    experts_per_record: int = Field(default=1, ge=1)


class SplitConfig(_Strict):
    test_size: float = Field(default=0.4, gt=0, lt=1)


class CandidateConfig(_Strict):
    """One small model to train: a model source, a method and its hyper-parameters."""

    name: str
    kind: Literal["tfidf_logreg", "encoder_classifier"]
    model: str | None = Field(default=None, description="model source, e.g. minilm-l6 (encoder_classifier)")
    method: Literal["full", "lora"] = "full"
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 64
    lora_r: int = 8


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
    max_drop_points: float = 2.0
    alpha: float = 0.05
    prices: PriceConfig


class Config(_Strict):
    name: str
    seed: int = 7
    experts: dict[str, str] = Field(min_length=2)
    source: SourceConfig = Field(default_factory=SourceConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    candidates: list[CandidateConfig] = Field(min_length=1)
    eval: EvalConfig

    @model_validator(mode="after")
    def _unique_candidate_names(self) -> Config:
        names = [c.name for c in self.candidates]
        if len(names) != len(set(names)):
            raise ValueError(f"candidate names must be unique: {names}")
        return self

    def store_url(self, runs_root: Path) -> str:
        """The store URL in force: environment, then config, then a SQLite file beside the runs."""
        url = os.environ.get("FLYWHEEL_STORE_URL") or self.store.url
        if url:
            return url
        # One store per config name, so the demo and the tiny test world never mix.
        return f"sqlite:///{(Path(runs_root) / f'store-{self.name}.db').resolve()}"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config; `overrides` is a nested dict merged on top (e.g. from notebook parameters)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    if overrides:
        raw = _deep_merge(raw, overrides)
    return Config.model_validate(raw)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
