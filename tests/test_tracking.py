"""MLflow tracking: the pure parts; the test-size cycle logged to a real `mlflow server` and read back with
MlflowClient; the same run directory logged to the local SQLite store twice (no duplicates); the flywheel's
weeks as steps; a tracking error that does not fail anything; the MLflow UI in headless Chromium."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.runs import RunDir
from flywheel.core.tracking import (
    CYCLE_TAG,
    KIND_TAG,
    CycleTracker,
    FlywheelTracker,
    curve_metrics,
    flatten_numbers,
    local_artifact_root,
    safe_uri,
    tracking_uri,
)

TEST_CONFIG = REPO_ROOT / "configs" / "test.yaml"


# --- the pure parts ----------------------------------------------------------------------------------------
def test_flatten_numbers_keeps_finite_numeric_leaves_with_mlflow_keys():
    data = {"a": {"b": 1, "c": [1, 2], "d": "text", "e": float("nan")}, "ok": True, "bad key(1)": 2.5}
    assert flatten_numbers(data) == {"a.b": 1.0, "ok": 1.0, "bad key_1_": 2.5}
    assert len(flatten_numbers({str(i): i for i in range(50)}, limit=10)) == 10


def test_curves_from_the_trainer_history_or_the_training_record(tmp_path):
    record = {"loss_curve": [[5, 1.9], [10, 1.2]], "validation_curve": [[8, 0.5]]}
    assert curve_metrics(tmp_path, record) == [("loss", 1.9, 5), ("loss", 1.2, 10), ("eval_accuracy", 0.5, 8)]
    history = [
        {"loss": 2.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 5},
        {"eval_loss": 1.5, "eval_accuracy": 0.6, "step": 5},
        {"train_runtime": 3.0},  # no step: the end-of-training summary
    ]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    points = curve_metrics(tmp_path, record)
    assert {("loss", 2.0, 5), ("eval_loss", 1.5, 5), ("eval_accuracy", 0.6, 5)} <= set(points)
    assert not [p for p in points if p[0] in ("epoch", "step", "train_runtime")]
    assert len(points) == 4  # the record's curves are not logged twice


def test_tracking_uri_environment_first_else_sqlite_beside_the_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking_uri(tmp_path / "runs")
    assert uri == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert local_artifact_root(uri) == (tmp_path / "runs" / "mlartifacts").resolve()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@mlflow.example:5000")
    assert tracking_uri(tmp_path / "runs") == "http://user:secret@mlflow.example:5000"
    assert local_artifact_root("http://mlflow.example:5000") is None
    assert safe_uri("http://user:secret@mlflow.example:5000/x") == "http://mlflow.example:5000/x"
    assert safe_uri("sqlite:////abs/runs/mlflow.db") == "sqlite:////abs/runs/mlflow.db"


def test_a_tracking_error_is_a_warning_and_a_manifest_entry(tmp_path):
    from flywheel.core.runs import create_run

    run = create_run(TEST_CONFIG, tmp_path / "runs" / "c1")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a store under a file cannot be opened
    lines = []
    tracker = CycleTracker(run, lines.append, uri=f"sqlite:///{blocker / 'mlflow.db'}")
    assert tracker.start() is None and tracker.stage_done("01_collect") is None  # nothing raised
    assert lines and all(line.startswith("warning: MLflow tracking") for line in lines)
    errors = run.manifest()["tracking"]["errors"]
    assert [e["step"] for e in errors] == ["start"]  # then off for this invocation: one warning, not four


def test_tracking_off_in_the_config_logs_nothing(tmp_path):
    from flywheel.core.runs import create_run

    config = tmp_path / "off.yaml"
    config.write_text(f"extends: {TEST_CONFIG}\ntracking: {{enabled: false}}\n")
    run = create_run(config, tmp_path / "runs" / "c1")
    assert CycleTracker(run, print).start() is None
    assert not (tmp_path / "runs" / "mlflow.db").exists() and "tracking" not in run.manifest()


def test_the_environment_switch_turns_tracking_off(tmp_path, monkeypatch):
    from flywheel.core.runs import create_run

    monkeypatch.setenv("FLYWHEEL_TRACKING", "off")
    run = create_run(TEST_CONFIG, tmp_path / "runs" / "c1")
    assert CycleTracker(run, print).start() is None and not (tmp_path / "runs" / "mlflow.db").exists()


def test_flywheel_weeks_are_steps_of_one_run_logged_once(tmp_path):
    from mlflow import MlflowClient

    config = load_config(REPO_ROOT / "configs" / "flywheel-test.yaml")  # 3 weeks
    folder = tmp_path / "flywheel-x"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    weeks = [
        {"week": w, "router": "production", "cycle_id": f"c{w}", "traffic": 100 + w, "satisfied_share": 0.5,
         "trigger": {"should_run": True}, "models": {"production": {"accuracy": 0.9 + w / 100}},
         "cost": {"usd": 1.5 * w, "cumulative_usd": 1.5 * w * (w + 1) / 2}, "events": []}
        for w in (1, 2, 3)
    ]  # fmt: skip
    for entry in [weeks[0], weeks[1], weeks[1], weeks[2]]:  # week 2 twice: logged once
        FlywheelTracker(folder, config, uri=uri).week(entry)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("flywheel-flywheel-test").experiment_id])
    assert run.info.run_name == "flywheel-x" and run.info.status == "FINISHED"
    traffic = client.get_metric_history(run.info.run_id, "traffic")
    assert [(m.step, m.value) for m in traffic] == [(1, 101.0), (2, 102.0), (3, 103.0)]
    accuracy = client.get_metric_history(run.info.run_id, "models.production.accuracy")
    assert [m.step for m in accuracy] == [1, 2, 3]
    assert run.data.tags["week_2.cycle_id"] == "c2" and run.data.params["weeks"] == "3"


# --- the test-size cycle on a real MLflow server ---------------------------------------------------------
def _cycle_runs(client, run_dir):
    experiment = client.get_experiment_by_name("flywheel-test")
    runs = client.search_runs([experiment.experiment_id], f"tags.`{CYCLE_TAG}` = '{run_dir.name}'")
    return experiment, runs


def test_the_cycle_is_tracked_on_the_mlflow_server(cycle_run, mlflow_server):
    from mlflow import MlflowClient

    _, summary, run_dir = cycle_run
    client = MlflowClient(mlflow_server)
    _, runs = _cycle_runs(client, run_dir)
    by_kind = {}
    for run in runs:
        by_kind.setdefault(run.data.tags[KIND_TAG], {})[run.info.run_name] = run
    (parent,) = by_kind["cycle"].values()
    assert parent.info.run_name == run_dir.name and parent.info.status == "FINISHED"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert parent.data.tags["git_commit"] == manifest["git_commit"]
    assert parent.data.tags["config"] == "test" and parent.data.tags["seed"] == str(manifest["seed"])
    assert parent.data.tags["review_simulated"] == "true"
    assert parent.data.tags["promoted"] == (summary["promoted"] or "none")
    assert set(by_kind["stage"]) == {"01_collect", "02_triage", "03_finetune", "04_eval"}
    for stage in by_kind["stage"].values():
        assert stage.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert stage.info.status == "FINISHED" and stage.data.metrics["seconds"] > 0
    assert by_kind["stage"]["01_collect"].data.metrics["ingest.quarantined"] > 0

    names = {c.name for c in load_config(TEST_CONFIG).candidates}
    assert set(by_kind["candidate"]) == names
    rows = {row["name"]: row for row in summary["candidates"] + summary["cascades"]}
    for name, run in by_kind["candidate"].items():
        assert run.data.params["kind"] and run.data.params["name"] == name  # the recipe
        for key in ("accuracy", "ci_low", "ci_high", "agreement", "p50_ms", "p95_ms", "cost_per_1k"):
            assert run.data.metrics[f"test.{key}"] == pytest.approx(rows[name][key]), (name, key)
        assert run.data.tags["promoted"] == str(name == summary["promoted"]).lower()
    minilm = by_kind["candidate"]["minilm-l6-full"]
    assert minilm.data.params["max_steps"] == "24" and minilm.data.params["learning_rate"] == "0.0002"
    folders = json.loads((run_dir / "results" / "03_finetune.json").read_text())["candidate_dirs"]
    for name, run in by_kind["candidate"].items():  # the training and validation curves, step by step
        training = json.loads((Path(folders[name]) / "training.json").read_text())
        for key, curve in (("loss", "loss_curve"), ("eval_accuracy", "validation_curve")):
            logged = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in logged] == [step for step, _ in training.get(curve) or []], (name, key)
    assert len(client.get_metric_history(by_kind["candidate"]["tiny-llama-full"].info.run_id, "loss")) >= 2
    assert set(by_kind.get("cascade", {})) == {c["name"] for c in summary["cascades"]}
    (production,) = by_kind["production"].values()
    assert production.data.metrics["test.accuracy"] == pytest.approx(summary["baseline"]["accuracy"])

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "report.html", "plots", "ground_truth", "config.yaml"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/accuracy_vs_cost.png" in plots


def test_a_logged_candidate_loads_from_the_server_and_routes(cycle_run, mlflow_server, monkeypatch):
    import mlflow.pyfunc
    from mlflow import MlflowClient

    _, _, run_dir = cycle_run
    client = MlflowClient(mlflow_server)
    _, runs = _cycle_runs(client, run_dir)
    tfidf = _candidate(runs, "tfidf-logreg")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # runs:/ URIs resolve through the server
    model = mlflow.pyfunc.load_model(f"runs:/{tfidf.info.run_id}/model")
    experts = set(load_config(TEST_CONFIG).experts)
    assert set(model.predict(["my vpn is not connecting", "how much parental leave do I get"])) <= experts


def test_logging_the_run_again_adds_no_runs(cycle_run, mlflow_server):
    """What a resumed cycle does: find its runs by their tags; stages logged before are skipped."""
    from mlflow import MlflowClient

    _, _, run_dir = cycle_run
    client = MlflowClient(mlflow_server)
    _, before = _cycle_runs(client, run_dir)
    scratch = _copy_without_artifacts(run_dir)
    tracker = CycleTracker(RunDir(scratch), print, uri=mlflow_server)
    assert tracker.start() == next(r.info.run_id for r in before if r.data.tags[KIND_TAG] == "cycle")
    for stage in ("01_collect", "02_triage", "03_finetune", "04_eval"):
        tracker.stage_done(stage)
    tracker.finish()
    _, after = _cycle_runs(client, run_dir)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)
    parent = next(r for r in after if r.data.tags[KIND_TAG] == "cycle")
    assert parent.info.status == "FINISHED" and "errors" not in RunDir(scratch).manifest()["tracking"]


def test_by_default_a_local_store_beside_the_runs(cycle_run, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, _, run_dir = cycle_run
    runs_root = tmp_path / "runs"
    run = RunDir(_copy_without_artifacts(run_dir, runs_root))
    for _ in range(2):  # twice: the second finds everything logged
        tracker = CycleTracker(run, print)
        tracker.start()
        for stage in ("01_collect", "02_triage", "03_finetune", "04_eval"):
            tracker.stage_done(stage)
        tracker.report(run.path / "report.html")
        tracker.finish()
    client = MlflowClient(f"sqlite:///{runs_root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("flywheel-test").experiment_id])
    assert len({r.info.run_name for r in runs}) == len(runs)
    parent = next(r for r in runs if r.data.tags[KIND_TAG] == "cycle")
    assert parent.info.artifact_uri.startswith((runs_root / "mlartifacts").resolve().as_uri())
    assert (runs_root / "mlartifacts" / "flywheel-test").is_dir()
    tfidf = _candidate(runs, "tfidf-logreg")
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(tfidf.info.run_id, "model")}
    assert run.manifest()["tracking"]["run_id"] == parent.info.run_id


def _copy_without_artifacts(run_dir, runs_root=None):
    """The run directory without its (large) artifacts folder: results point at the original's."""
    runs_root = runs_root or tempfile.mkdtemp(prefix="tracking-")
    return shutil.copytree(run_dir, f"{runs_root}/{run_dir.name}", ignore=shutil.ignore_patterns("artifacts"))


def _candidate(runs, name):
    return next(r for r in runs if r.info.run_name == name and r.data.tags[KIND_TAG] == "candidate")


def test_the_mlflow_ui_shows_the_cycle(cycle_run, mlflow_server, chromium, tmp_path):
    from mlflow import MlflowClient
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium
    _, _, run_dir = cycle_run
    experiment, _ = _cycle_runs(MlflowClient(mlflow_server), run_dir)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--window-size=1600,1000"):  # fmt: skip
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        # the runs of the experiment in the UI's "Model training" view (its default view is GenAI traces)
        driver.get(
            f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
        )
        found = WebDriverWait(driver, 90).until(
            ec.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{run_dir.name}')]"))
        )
        assert found.text.strip().startswith(run_dir.name)
    finally:
        driver.quit()
