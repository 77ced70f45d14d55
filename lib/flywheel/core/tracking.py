"""Experiment tracking with MLflow: what a cycle's run directory records, logged after each stage.

Stages run in their own papermill kernels, so the cycle runner logs, after a stage is done, what the stage
wrote into the run directory: one parent MLflow run per cycle (named by the cycle id), a nested run per
stage and per model (candidates, cascades, the production baseline). A flywheel run (`flywheel run`) is one
MLflow run with each week's trajectory entry as metrics at step = week.

Where: `MLFLOW_TRACKING_URI` (a team's server), else a SQLite store beside the runs
(`<runs folder>/mlflow.db`, artifacts in `<runs folder>/mlartifacts/`); `make mlflow` opens its UI. Runs
are found again by their tags, so a resumed cycle adds to its own runs instead of duplicating them.
Tracking never fails a cycle: an error becomes one warning line and an entry in the manifest's
`tracking.errors`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from flywheel.core.config import Config, load_config
from flywheel.core.runs import RunDir, now_iso

if TYPE_CHECKING:
    from mlflow import MlflowClient

URI_ENV = "MLFLOW_TRACKING_URI"
SWITCH_ENV, OFF = "FLYWHEEL_TRACKING", ("0", "off", "false", "no")  # the environment's off switch
LOCAL_DB, LOCAL_ARTIFACTS = "mlflow.db", "mlartifacts"
# tags that find a run again (idempotent logging)
CYCLE_TAG, KIND_TAG, STAGE_TAG, MODEL_TAG = (
    "flywheel.cycle_id",
    "flywheel.kind",
    "flywheel.stage",
    "flywheel.model",
)
FLYWHEEL_TAG, LOGGED_TAG = "flywheel.flywheel_id", "flywheel.logged"
PARENT_TAG, KIND_UI_TAG = "mlflow.parentRunId", "mlflow.experimentKind"
PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
BATCH = 100  # MLflow takes at most 100 params or tags and 1000 metrics per batch
MODEL_METRICS = (
    "accuracy", "ci_low", "ci_high", "n", "agreement", "mcnemar_p", "p50_ms", "p95_ms", "cost_per_1k",
    "parameters", "deferral_share", "threshold", "validation_deferral_share", "hidden_truth_accuracy",
    "unseen_template_accuracy",
)  # fmt: skip
TRAINING_SKIP = {"loss_curve", "validation_curve", "step", "epoch"}


def tracking_uri(runs_root: str | Path) -> str:
    """The tracking URI in force: the environment's, else the SQLite store in the runs folder."""
    return os.environ.get(URI_ENV) or f"sqlite:///{(Path(runs_root) / LOCAL_DB).resolve()}"


def local_artifact_root(uri: str) -> Path | None:
    """The artifact folder beside a local SQLite store; None for any other store (its server decides)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).parent / LOCAL_ARTIFACTS


def safe_uri(uri: str) -> str:
    """The URI without user name and password, for the manifest and log lines."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri  # as given: urlunsplit would drop a slash of sqlite:////abs/path
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def experiment_name(config: Config) -> str:
    return config.tracking.experiment or f"flywheel-{config.name}"


def flatten_numbers(data: Any, prefix: str = "", limit: int = 300) -> dict[str, float]:
    """Numeric leaves of nested mappings as `a.b.c` keys (booleans as 0/1; lists, strings, NaN and
    infinities left out), in MLflow's allowed key characters, at most `limit` of them."""
    found: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(value)):
            found[metric_key(key)] = float(value)

    walk(data, prefix)
    return found


def metric_key(key: str) -> str:
    """MLflow names take letters, digits and `_ - . space : /`; anything else becomes `_`."""
    return re.sub(r"[^\w\-. :/]", "_", key)[:250] or "_"


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 6000 else text[:5999] + "…"  # MLflow's limit on a param's length


def recipe_params(candidate: dict) -> dict[str, str]:
    """A candidate's recipe (its config entry) as MLflow params, None values left out."""
    return {metric_key(k): param_value(v) for k, v in sorted(candidate.items()) if v is not None}


def curve_metrics(folder: Path, training: dict) -> list[tuple[str, float, int]]:
    """The candidate's training and validation curves as (key, value, step): the Trainer's whole log history
    where the folder has it (`trainer_state.json`, or the SFT history), else the loss and validation curves
    of its training record. Keys are the Trainer's (`loss`, `eval_loss`, `eval_accuracy`, `learning_rate`)."""
    history = None
    for name in ("trainer_state.json", "sft_history.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            history = data.get("log_history") if isinstance(data, dict) else data
            break
    points: list[tuple[str, float, int]] = []
    if history:
        for entry in history:
            if "step" not in entry:
                continue
            for key, value in flatten_numbers(
                {k: v for k, v in entry.items() if k not in TRAINING_SKIP}
            ).items():
                points.append((key, value, int(entry["step"])))
        if any(key == "eval_accuracy" for key, _, _ in points) or not training.get("validation_curve"):
            return points
    else:
        points += [("loss", float(loss), int(step)) for step, loss in training.get("loss_curve") or []]
    points += [
        ("eval_accuracy", float(acc), int(step)) for step, acc in training.get("validation_curve") or []
    ]
    return points


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def flywheel_requirements() -> list[str]:
    """The pinned requirements of the installed flywheel package, for a logged model's environment (so MLflow
    does not infer them: that imports the model in a subprocess, seconds to minutes)."""
    try:
        requires = metadata.requires("flywheel") or []
    except metadata.PackageNotFoundError:
        requires = []
    return [r for r in requires if "extra ==" not in r]


class _Client:
    """The few MLflow calls the trackers make, on one client (no active run, no global tracking URI)."""

    def __init__(self, uri: str):
        from mlflow import MlflowClient

        self.uri = uri
        self.client: MlflowClient = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        root = local_artifact_root(self.uri)
        location = (root / name).resolve().as_uri() if root else None
        # the UI opens it as model training, not as a GenAI app
        return self.client.create_experiment(
            name, artifact_location=location, tags={KIND_UI_TAG: "custom_model_development"}
        )

    def find(self, experiment_id: str, tags: dict[str, str]) -> list:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return self.client.search_runs([experiment_id], filter_string=query, max_results=1000)

    def find_or_create(self, experiment_id: str, name: str, tags: dict[str, str]):
        found = self.find(experiment_id, tags)
        if found:
            return found[0]
        return self.client.create_run(experiment_id, run_name=name, tags=tags)

    def log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        steps: Iterable[tuple[str, float, int]] = (),
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        points = [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
        points += [Metric(metric_key(k), v, now, step) for k, v, step in steps]
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, len(points), 1000):
            self.client.log_batch(run_id, metrics=points[i : i + 1000])
        for i in range(0, max(len(param_list), len(tag_list)), BATCH):
            self.client.log_batch(run_id, params=param_list[i : i + BATCH], tags=tag_list[i : i + BATCH])


def _guarded(what: str) -> Callable:
    """A tracker step that never raises: its error becomes a warning line and a manifest entry."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            if not self.enabled:
                return None
            try:
                return method(self, *args, **kwargs)
            except Exception as err:  # tracking must never fail a cycle
                self.warn(what, err)
                return None

        return guarded

    return wrap


class CycleTracker:
    """Logs one cycle's run directory to MLflow, stage by stage. Every method is safe to call again (a
    resumed cycle): runs are found by their tags and a stage already logged is skipped."""

    def __init__(self, run: RunDir, log: Callable[[str], None] = print, uri: str | None = None):
        self.run, self.log = run, log
        self.config = load_config(run.config_path)
        self.enabled = self.config.tracking.enabled and os.environ.get(SWITCH_ENV, "").lower() not in OFF
        self.uri = uri or tracking_uri(run.runs_root)
        self._client: _Client | None = None
        self._parent_id: str | None = None
        self._experiment_id: str | None = None

    # --- plumbing ----------------------------------------------------------------------------------------
    def warn(self, what: str, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        self.log(f"warning: MLflow tracking ({what}) failed, the cycle goes on: {message}")
        try:
            tracking = self.run.manifest().get("tracking") or {}
            errors = [*tracking.get("errors", []), {"at": now_iso(), "step": what, "error": message}]
            self.run.update_manifest(tracking={**tracking, "errors": errors})
        except Exception:  # a manifest that cannot be written is the cycle's own error, raised elsewhere
            pass

    @property
    def client(self) -> _Client:
        if self._client is None:
            self._client = _Client(self.uri)
        return self._client

    def _cycle_tags(self) -> dict[str, str]:
        return {CYCLE_TAG: self.run.cycle_id}

    def _child(self, name: str, tags: dict[str, str]):
        return self.client.find_or_create(
            self._experiment_id,
            name,
            {**self._cycle_tags(), **tags, PARENT_TAG: self.parent_id},
        )

    # --- the cycle's run -----------------------------------------------------------------------------
    @property
    def parent_id(self) -> str:
        if self._parent_id is None:
            self._experiment_id = self.client.experiment_id(experiment_name(self.config))
            tags = {**self._cycle_tags(), KIND_TAG: "cycle"}
            parent = self.client.find_or_create(self._experiment_id, self.run.cycle_id, tags)
            self._parent_id = parent.info.run_id
        return self._parent_id

    def start(self) -> str | None:
        """Find or create the cycle's run (status RUNNING again on a resume) and tag it. When the store cannot
        be reached, tracking is off for the rest of this invocation (one warning, not one per stage)."""
        if not self.enabled:
            return None
        try:
            return self._start()
        except Exception as err:
            self.warn("start", err)
            self.enabled = False
            return None

    def _start(self) -> str:
        manifest = self.run.manifest()
        run_id = self.parent_id
        self.client.client.update_run(run_id, status="RUNNING")
        tags = {
            "config": self.config.name,
            "git_commit": manifest.get("git_commit") or "unknown",
            "seed": str(self.config.seed),
            "review_mode": self.config.review.mode,
            "review_simulated": str(self.config.review.mode == "simulate").lower(),
        }
        params = {"config": self.config.name, "seed": str(self.config.seed)}
        self.client.log(run_id, params=params, tags=tags)
        self.run.update_manifest(
            tracking={
                **(manifest.get("tracking") or {}),
                "uri": safe_uri(self.uri),
                "experiment": experiment_name(self.config),
                "experiment_id": self._experiment_id,
                "run_id": run_id,
            }
        )
        self.log(
            f"MLflow: run {run_id} in experiment {experiment_name(self.config)!r} at {safe_uri(self.uri)}"
        )
        return run_id

    @_guarded("stage")
    def stage_done(self, stage: str) -> None:
        """Log what a finished stage recorded (once: a stage logged before is skipped)."""
        child = self._child(stage, {KIND_TAG: "stage", STAGE_TAG: stage})
        if child.data.tags.get(LOGGED_TAG) == "true":
            return
        run_id = child.info.run_id
        entry = self.run.manifest().get("stages", {}).get(stage, {})
        metrics = {k: float(entry[k]) for k in ("seconds", "peak_rss_mb") if entry.get(k) is not None}
        recorded = self.run.results_path(stage).is_file()  # a notebook of one's own may record nothing
        if recorded:
            metrics.update(flatten_numbers(self.run.results(stage)))
        self.client.log(run_id, metrics=metrics, tags={"attempts": len(entry.get("attempts", []))})
        if recorded:
            self.client.client.log_artifact(run_id, str(self.run.results_path(stage)), "results")
            details = {"02_triage": self._triage, "03_finetune": self._finetune, "04_eval": self._eval}
            details.get(stage, lambda _: None)(run_id)
        self.client.log(run_id, tags={LOGGED_TAG: "true"})
        self.client.client.set_terminated(run_id, "FINISHED")

    @_guarded("stage failure")
    def stage_failed(self, stage: str, error: str) -> None:
        child = self._child(stage, {KIND_TAG: "stage", STAGE_TAG: stage})
        self.client.log(child.info.run_id, tags={"error": error[:5000]})
        self.client.client.set_terminated(child.info.run_id, "FAILED")
        self.client.client.set_terminated(self.parent_id, "FAILED")

    @_guarded("pause")
    def paused(self, status: str) -> None:
        self.client.log(self.parent_id, tags={"flywheel.status": status})

    @_guarded("report")
    def report(self, path: Path) -> None:
        self.client.client.log_artifact(self.parent_id, str(path))

    @_guarded("finish")
    def finish(self) -> None:
        self.client.log(self.parent_id, tags={"flywheel.status": "complete"})
        self.client.client.set_terminated(self.parent_id, "FINISHED")

    # --- per stage ------------------------------------------------------------------------------------
    def _triage(self, run_id: str) -> None:
        review = self.run.manifest().get("review") or {}
        self.client.log(self.parent_id, tags={"review_simulated": str(bool(review.get("simulated"))).lower()})
        truth = (self.run.results("02_triage") or {}).get("ground_truth") or {}
        card = Path(truth.get("folder", "")) / "card.json"
        if truth.get("folder") and card.is_file():
            self.client.client.log_artifact(run_id, str(card), "ground_truth")
            self.client.client.log_artifact(self.parent_id, str(card), "ground_truth")

    def _finetune(self, run_id: str) -> None:
        results = self.run.results("03_finetune")
        recipes = {c["name"]: c for c in self.run.manifest().get("config", {}).get("candidates", [])}
        for name, folder in results.get("candidate_dirs", {}).items():
            self._candidate(
                name, Path(folder), recipes.get(name, {"name": name}), results["candidates"].get(name)
            )

    def _candidate(self, name: str, folder: Path, recipe: dict, record: dict | None) -> None:
        child = self._child(name, {KIND_TAG: "candidate", MODEL_TAG: name})
        run_id = child.info.run_id
        training_path = folder / "training.json"
        training = json.loads(training_path.read_text()) if training_path.is_file() else (record or {})
        card_path = folder / "candidate.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        params = recipe_params(recipe)
        for key in ("source", "method", "weights"):  # what the recipe left to defaults
            if key in card and key not in params:
                params[key] = param_value(card[key])
        numbers = {k: v for k, v in training.items() if k not in TRAINING_SKIP}
        self.client.log(
            run_id,
            params=params,
            metrics={f"training.{k}": v for k, v in flatten_numbers(numbers).items()},
            tags={"kind": card.get("kind", recipe.get("kind", "?"))},
            steps=curve_metrics(folder, training),
        )
        for extra in ("candidate.json", "training.json", "training_curve.png"):
            if (folder / extra).is_file():
                self.client.client.log_artifact(run_id, str(folder / extra), "candidate")
        self._model(run_id, folder)
        self.client.client.set_terminated(run_id, "FINISHED")

    def _model(self, run_id: str, folder: Path) -> None:
        """The candidate as an MLflow model (tracking_model.RouterModel around its folder) when the folder is
        small enough; otherwise a tag says why it is not there."""
        limit = self.config.tracking.max_model_mb
        size = folder_mb(folder)
        if size > limit:
            reason = (
                f"folder {size:.0f} MB > tracking.max_model_mb {limit:g}: not copied, it stays in the run "
                "directory"
            )
            self.client.log(run_id, tags={"model_not_logged": reason})
            return
        import tempfile

        import mlflow.pyfunc

        from flywheel.core.tracking_model import ROUTER_ARTIFACT, RouterModel

        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "model"
            with _quiet_mlflow():
                mlflow.pyfunc.save_model(
                    saved,
                    python_model=RouterModel(),
                    artifacts={ROUTER_ARTIFACT: str(folder)},
                    pip_requirements=flywheel_requirements(),
                )
            self.client.client.log_artifacts(run_id, str(saved), "model")
        self.client.log(run_id, tags={"model": "model (pyfunc: flywheel router)"})

    def _eval(self, run_id: str) -> None:
        summary = json.loads(self.run.summary_path.read_text())
        rows = [summary["baseline"], *summary.get("candidates", []), *summary.get("cascades", [])]
        promoted = summary.get("promoted")
        for row in rows:
            metrics = {k: float(row[k]) for k in MODEL_METRICS if _finite(row.get(k))}
            if row.get("is_baseline"):
                child = self._child("production (baseline)", {KIND_TAG: "production", MODEL_TAG: row["name"]})
                params = {"model": param_value(row.get("model", row["name"]))}
            elif row.get("kind") == "cascade":
                child = self._child(row["name"], {KIND_TAG: "cascade", MODEL_TAG: row["name"]})
                params = {"student": row["student"], "threshold": param_value(row.get("threshold"))}
            else:
                child = self._child(row["name"], {KIND_TAG: "candidate", MODEL_TAG: row["name"]})
                params = {}
            tags = {"promoted": str(row["name"] == promoted).lower()}
            reason = summary.get("promotion", {}).get("rejected", {}).get(row["name"])
            if reason:
                tags["not_promoted_because"] = reason
            self.client.log(
                child.info.run_id,
                metrics={f"test.{k}": v for k, v in metrics.items()},
                params=params,
                tags=tags,
            )
            if child.info.status == "RUNNING":
                self.client.client.set_terminated(child.info.run_id, "FINISHED")
            self.client.log(
                run_id, metrics={metric_key(f"{row['name']}.test.{k}"): v for k, v in metrics.items()}
            )
        baseline = summary["baseline"]
        parent = {
            "baseline.test.accuracy": baseline["accuracy"],
            "baseline.cost_per_1k": baseline["cost_per_1k"],
        }
        winner = next((r for r in rows if r["name"] == promoted), None)
        if winner is not None:
            parent.update(
                {"promoted.test.accuracy": winner["accuracy"], "promoted.cost_per_1k": winner["cost_per_1k"]}
            )
        self.client.log(self.parent_id, metrics=parent, tags={"promoted": promoted or "none"})
        for path in (self.run.summary_path, self.run.config_path):
            self.client.client.log_artifact(self.parent_id, str(path))
        plots = self.run.path / "plots"
        if plots.is_dir():
            self.client.client.log_artifacts(self.parent_id, str(plots), "plots")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Saving a model without MLflow's notes (pickling advice, a progress bar for a local copy)."""
    import logging

    logger = logging.getLogger("mlflow")
    level, bar = logger.level, os.environ.get(PROGRESS_ENV)
    logger.setLevel(logging.ERROR)
    os.environ[PROGRESS_ENV] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = bar


class FlywheelTracker:
    """One MLflow run per `flywheel run` (named by its folder), each week's trajectory entry as metrics at
    step = week. Its store is the one its cycles log to (`<flywheel folder>/cycles/`, or
    MLFLOW_TRACKING_URI)."""

    def __init__(
        self, folder: Path, config: Config, log: Callable[[str], None] = print, uri: str | None = None
    ):
        self.folder, self.config, self.log = Path(folder), config, log
        self.enabled = config.tracking.enabled and os.environ.get(SWITCH_ENV, "").lower() not in OFF
        self.uri = uri or tracking_uri(self.folder / "cycles")
        self._client: _Client | None = None
        self._run_id: str | None = None

    def warn(self, what: str, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        self.log(f"warning: MLflow tracking ({what}) failed, the flywheel goes on: {message}")

    def _run(self):
        if self._client is None:
            self._client = _Client(self.uri)
        experiment_id = self._client.experiment_id(experiment_name(self.config))
        tags = {FLYWHEEL_TAG: self.folder.name, KIND_TAG: "flywheel"}
        found = self._client.find_or_create(experiment_id, self.folder.name, tags)
        if self._run_id is None:
            self._run_id = found.info.run_id
            params = {"config": self.config.name, "seed": str(self.config.seed)}
            if self.config.flywheel is not None:
                params["weeks"] = str(self.config.flywheel.weeks)
            self._client.log(self._run_id, params=params, tags={"config": self.config.name})
        return found

    @_guarded("week")
    def week(self, entry: dict) -> None:
        """Log one week's trajectory entry (once per week: a week logged before is skipped)."""
        run = self._run()
        week = int(entry["week"])
        if int(run.data.tags.get("flywheel.weeks_logged", "0")) >= week:
            return
        numbers = flatten_numbers({k: v for k, v in entry.items() if k != "week"})
        self._client.log(
            self._run_id,
            steps=[(key, value, week) for key, value in numbers.items()],
            tags={"flywheel.weeks_logged": str(week), f"week_{week}.router": entry.get("router", "?")}
            | ({f"week_{week}.cycle_id": entry["cycle_id"]} if entry.get("cycle_id") else {}),
        )
        if self.config.flywheel is not None and week >= self.config.flywheel.weeks:
            self._client.client.set_terminated(self._run_id, "FINISHED")


def track_week(folder: Path, config: Config, entry: dict, log: Callable[[str], None] = print) -> None:
    """`flywheel run`'s hook: log one week's trajectory entry (never raises)."""
    FlywheelTracker(folder, config, log).week(entry)
