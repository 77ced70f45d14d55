"""report.html and summary.json are meant for sharing: the decision in one sentence, numbers with units, no
kernel stderr, no progress widgets, no machine paths."""

import json
import os
import re

import nbformat
import pytest

from flywheel.core.runs import RunDir
from flywheel.core.sharing import shareable, shareable_text
from flywheel.cycle import export_report
from flywheel.evaluate.report import (
    decision_sentence,
    money,
    monthly_queries,
    readable_frame,
    readable_table,
)

BASELINE = {
    "name": "baseline", "model": "llama-3.1-70b-instruct", "is_baseline": True, "kind": "production",
    "accuracy": 0.943089, "ci_low": 0.915, "ci_high": 0.962, "p50_ms": 1189.0, "cost_per_1k": 0.237249,
}  # fmt: skip
STUDENT = {
    "name": "tfidf-logreg", "kind": "single", "accuracy": 0.739837, "ci_low": 0.693, "ci_high": 0.782,
    "mcnemar_p": 1.794519e-13, "agreement": 0.75, "p50_ms": 0.978548, "cost_per_1k": 2.5e-05,
    "parameters": 24437.0,
}  # fmt: skip
CASCADE = {
    "name": "tfidf-logreg+defer", "kind": "cascade", "student": "tfidf-logreg", "accuracy": 0.93,
    "ci_low": 0.896, "ci_high": 0.953, "mcnemar_p": 1.0, "agreement": 0.97, "deferral_share": 0.37,
    "p50_ms": 3.8, "cost_per_1k": 0.0643, "parameters": 134515008.0,
}  # fmt: skip
RAW_FLOAT = re.compile(r"(?<![$\d.])\d+\.\d{4,}\b|\de[-+]\d\d")  # 0.943089, 2.6e-07; not $0.000025


def test_the_table_has_units_and_names_production():
    table = readable_table([BASELINE, STUDENT, CASCADE], promoted="tfidf-logreg+defer")
    text = table.to_string()
    assert not RAW_FLOAT.search(text), text
    assert list(table.index) == ["production (llama-3.1-70b-instruct)", "tfidf-logreg", "tfidf-logreg+defer"]
    assert table.loc["tfidf-logreg", "accuracy (95% CI)"] == "74.0% (69.3–78.2)"
    assert table.loc["tfidf-logreg", "vs production"] == "−20.3 pts"
    assert table.loc["tfidf-logreg", "paired test p"] == "< 0.001"
    assert table.loc["tfidf-logreg", "median latency"] == "0.98 ms"
    assert table.loc["production (llama-3.1-70b-instruct)", "median latency"] == "1,189 ms"
    assert table.loc["tfidf-logreg", "$ per 1k questions"] == "$0.0000250"
    assert table.loc["tfidf-logreg+defer", "parameters"] == "134.5 M"
    assert table.loc["tfidf-logreg+defer", "defers to production"] == "37%"
    assert table["promoted"].tolist() == ["", "", "✔"]
    assert "baseline (baseline)" not in text


def test_result_frames_get_units_by_column():
    import pandas as pd

    frame = pd.DataFrame(
        {"threshold": [0.61234], "test_deferral_share": [0.3712], "validation_drop_upper": [0.0183],
         "accuracy": [0.93012], "cost_per_1k_usd": [0.0643], "p50_ms": [3.812]},
        index=pd.Index(["a+defer"], name="cascade"),
    )  # fmt: skip
    shown = readable_frame(frame)
    assert shown.iloc[0].tolist() == ["0.61", "37.1%", "+1.8 pts", "93.0%", "$0.0643", "3.8 ms"]


def test_the_decision_in_one_sentence():
    rows = [BASELINE, STUDENT, CASCADE]
    decision = {"promoted": "tfidf-logreg+defer", "registry_event": "promote"}
    sentence = decision_sentence(rows, decision, queries_per_month=100_000, max_drop_points=2)
    assert sentence.startswith("**tfidf-logreg+defer is promoted**")
    assert "defers 37% of the questions" in sentence and "within the allowed drop of 2 points" in sentence
    saving = (BASELINE["cost_per_1k"] - CASCADE["cost_per_1k"]) / 1000 * 100_000
    assert f"about {money(saving)} less per month" in sentence and "100,000 questions a month" in sentence
    assert sentence.count(". ") == 0  # one sentence
    shadow = decision_sentence(rows, {**decision, "registry_event": "shadow"}, None)
    assert "goes into its shadow week" in shadow and "per month" not in shadow
    kept = decision_sentence(rows, {"promoted": None}, 1000)
    assert kept.startswith("**Nothing promoted: production (llama-3.1-70b-instruct) keeps serving.**")
    assert "the closest, tfidf-logreg+defer, routes 93.0%" in kept


def test_monthly_queries_from_the_logged_span():
    import pandas as pd

    stamps = pd.Series(pd.date_range("2026-09-01", periods=61, freq="12h", tz="UTC").astype(str))
    assert monthly_queries(stamps) == pytest.approx(61 / 30 * 30)
    assert monthly_queries(stamps[:1]) is None


def test_shareable_removes_machine_paths(tmp_path):
    run_path = tmp_path / "runs" / "c1"
    home = os.path.expanduser("~")
    data = {
        "folder": str(run_path / "artifacts" / "gt"),
        "credentials": f"{home}/.cache/flywheel/argilla/credentials.json",
        "elsewhere": "/srv/argilla/credentials.json",
        "reason": f"see {run_path}/results/04_eval.json",
        "n": 3,
    }
    shared = shareable(data, run_path)
    assert shared == {
        "folder": "artifacts/gt",
        "credentials": "~/.cache/flywheel/argilla/credentials.json",
        "elsewhere": "credentials.json",
        "reason": "see ./results/04_eval.json",
        "n": 3,
    }
    assert shareable_text(f"{run_path}2/x", run_path) != "./2/x"  # another folder that starts alike


def test_export_report_drops_stderr_widgets_and_paths(tmp_path):
    run = RunDir(tmp_path / "runs" / "c1")
    (run.path / "notebooks").mkdir(parents=True)
    home = os.path.expanduser("~")
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=f"{home}/x.py:3: FutureWarning: old\n"),
        nbformat.v4.new_output("stream", name="stdout", text=f"registry: {run.path}/artifacts/m\n"),
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": {"model_id": "1"}, "text/plain": "latency 0%|"},
        ),
        nbformat.v4.new_output("execute_result", data={"text/plain": "the table"}, execution_count=1),
    ]
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), cell])
    nbformat.write(book, run.path / "notebooks" / "04_eval.ipynb")
    html = export_report(run).read_text()
    assert "the table" in html and "registry: ./artifacts/m" in html
    assert "FutureWarning" not in html and "latency 0%" not in html
    assert str(run.path) not in html and home not in html


# --- the test-size cycle's report -------------------------------------------------------------------------
def test_the_cycle_report_reads_well_and_holds_no_machine_paths(cycle_run):
    runs, summary, run_dir = cycle_run
    html = (run_dir / "report.html").read_text()
    text = re.sub(
        r"<(style|script)[^>]*>.*?</\1>|<[^>]+>|data:image/png;base64,[^\"']+", " ", html, flags=re.S
    )
    decision = next(line for line in text.splitlines() if " promoted" in line or "keeps serving" in line)
    assert summary["promoted"] is None or summary["promoted"] in decision
    assert "per 1,000 questions" in text or "keeps serving" in text
    assert "baseline (baseline)" not in text and "production (" in text
    assert "Warning" not in text and "%|" not in text  # no stderr, no progress bars
    assert not RAW_FLOAT.search(text.split("Why, model by model")[0]), "raw floats in the tables"
    home = os.path.expanduser("~")
    for shared in ("report.html", "summary.json"):
        content = (run_dir / shared).read_text()
        for machine_path in (str(run_dir), str(runs.resolve()), home):
            assert machine_path not in content, (shared, machine_path)
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["ground_truth"]["folder"].startswith("artifacts/ground_truth/")
