"""The blind audit: the sample (stratified by week, blind, seeded, held out for good) and its round trip
through the real Argilla server (a second dataset beside triage, answered by three simulated experts,
pulled as audit answers without a cause)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_CATALOG, embedded_argilla, small_demo_world

from flywheel.core.audit import sample_audit, week_quotas

EXPERTS = SMALL_CATALOG
HIDDEN = ["routed_expert", "satisfied", "thumbs", "rating", "comment", "feedback"]


def logs(weeks=(300, 120, 45, 9), seed=0) -> pd.DataFrame:
    """Interactions over consecutive ISO weeks (Mondays from 2026-09-07), with the columns the sample must
    not read."""
    rng = np.random.default_rng(seed)
    rows = []
    for week, n in enumerate(weeks):
        start = pd.Timestamp("2026-09-07", tz="UTC") + pd.Timedelta(weeks=week)
        for i in range(n):
            rows.append(
                {
                    "id": f"w{week}-{i:04d}",
                    "timestamp": start + pd.Timedelta(seconds=int(rng.integers(0, 7 * 86400))),
                    "routed_expert": str(rng.choice(list(EXPERTS))),
                    "satisfied": bool(rng.random() < 0.6),
                    "thumbs": str(rng.choice(["up", "down"])),
                    "rating": int(rng.integers(1, 6)),
                    "comment": None,
                    "feedback": str(rng.random()),
                }
            )
    return pd.DataFrame(rows)


def key(sample):
    return [(row["interaction_id"], row["split"]) for row in sample]


def test_each_week_gets_its_share_within_one_and_the_validation_count_is_exact():
    frame = logs()
    sample = sample_audit(frame, set(), size=101, validation_share=0.3, seed=1, cycle_id="c1")
    assert len(sample) == 101 and len({r["interaction_id"] for r in sample}) == 101
    weeks = pd.Series([r["interaction_id"].split("-")[0] for r in sample]).value_counts()
    share = frame["id"].str.split("-").str[0].value_counts() / len(frame)
    for week, fraction in share.items():
        assert abs(weeks.get(week, 0) - 101 * fraction) < 1, week
    assert sum(r["split"] == "validation" for r in sample) == round(101 * 0.3)
    assert {r["cycle_id"] for r in sample} == {"c1"}
    assert all(r["sampled_at"].tzinfo is not None for r in sample)


def test_newest_weeks_draws_from_the_latest_weeks_only():
    frame = logs()  # 300, 120, 45 and 9 interactions over four weeks
    sample = sample_audit(frame, set(), size=27, validation_share=0.0, seed=1, cycle_id="c", newest_weeks=2)
    weeks = pd.Series([r["interaction_id"].split("-")[0] for r in sample]).value_counts().to_dict()
    assert set(weeks) == {"w2", "w3"} and sum(weeks.values()) == 27
    assert abs(weeks["w2"] - 27 * 45 / 54) < 1  # by their shares within the two newest weeks
    # the newest weeks not audited yet: with week 3 audited in full, weeks 1 and 2
    audited = {i for i in frame["id"] if i.startswith("w3")}
    later = sample_audit(frame, audited, size=33, validation_share=0.0, seed=1, cycle_id="c", newest_weeks=2)
    assert {r["interaction_id"].split("-")[0] for r in later} == {"w1", "w2"}
    assert key(sample_audit(frame, set(), 27, 0.0, 1, "c")) != key(sample)  # all weeks: another sample


def test_iso_weeks_are_the_strata_even_across_a_year_end():
    frame = pd.DataFrame(
        {
            "id": [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(10)],
            # 2026-12-28 (Mon) .. 2027-01-03 (Sun) is one ISO week (2026-W53); 2027-01-04 starts the next
            "timestamp": list(pd.date_range("2026-12-28", "2027-01-03 23:00", periods=30, tz="UTC"))
            + list(pd.date_range("2027-01-04", periods=10, freq="h", tz="UTC")),
        }
    )
    sample = sample_audit(frame, set(), size=8, validation_share=0.0, seed=3, cycle_id="c")
    assert sorted(r["interaction_id"][0] for r in sample) == ["a"] * 6 + ["b"] * 2
    assert {r["split"] for r in sample} == {"test"}


def test_blind_to_feedback_and_routing_and_to_row_order():
    frame = logs()
    sample = sample_audit(frame, set(), size=60, validation_share=0.25, seed=7, cycle_id="c1")
    shuffled = frame.copy()
    rng = np.random.default_rng(99)
    for column in HIDDEN:
        shuffled[column] = rng.permutation(shuffled[column].to_numpy())
    shuffled = shuffled.sample(frac=1, random_state=5)
    assert key(sample_audit(shuffled, set(), 60, 0.25, 7, "c1")) == key(sample)
    # and it never reads them: the id and the timestamp are all it needs
    assert key(sample_audit(frame[["id", "timestamp"]], set(), 60, 0.25, 7, "c1")) == key(sample)


def test_deterministic_and_seeded():
    """The same store gives the same sample in every run (a fresh demo cycle is reproducible); another seed,
    or other interactions available (a later cycle), another sample."""
    frame = logs()
    first = sample_audit(frame, set(), 50, 0.3, seed=1, cycle_id="c1")
    assert key(sample_audit(frame, set(), 50, 0.3, seed=1, cycle_id="c2")) == key(first)
    assert key(sample_audit(frame, set(), 50, 0.3, seed=2, cycle_id="c1")) != key(first)
    fewer = frame[frame["id"] != frame["id"].iloc[-1]]
    assert key(sample_audit(fewer, set(), 50, 0.3, seed=1, cycle_id="c1")) != key(first)


def test_items_audited_before_are_never_sampled_again_and_keep_their_split(store):
    from conftest import good_record

    from flywheel.core.rows import content_hash, to_row
    from flywheel.core.schema import Interaction

    records = [good_record(i, timestamp=f"2026-09-{8 + i % 14:02d}T10:00:00Z") for i in range(120)]
    store.add_interactions([to_row(Interaction.model_validate(r), content_hash(r), "test") for r in records])
    frame = store.interactions_frame()
    cycles = []
    for cycle in ("c1", "c2", "c3"):
        audited = set(store.audit_frame()["interaction_id"])
        sample = sample_audit(frame, audited, size=50, validation_share=0.3, seed=0, cycle_id=cycle)
        assert not {r["interaction_id"] for r in sample} & audited
        assert store.add_audit_items(sample) == len(sample)
        cycles.append(sample)
    assert [len(s) for s in cycles] == [50, 50, 20]  # fewer left than asked: all of them
    assert [sum(r["split"] == "validation" for r in s) for s in cycles] == [15, 15, 6]
    audit = store.audit_frame()
    assert len(audit) == 120 and audit["interaction_id"].is_unique
    first = {r["interaction_id"]: r["split"] for r in cycles[0]}
    # sampling again (a resumed cycle) adds nothing and changes no split
    assert store.add_audit_items(sample_audit(frame, set(), 120, 0.5, 1, "again")) == 0
    kept = store.audit_frame().set_index("interaction_id")["split"]
    assert all(kept[i] == split for i, split in first.items())
    assert sample_audit(frame, set(kept.index), 10, 0.3, 0, "c4") == []


def test_edge_sizes():
    frame = logs(weeks=(5, 5))
    assert sample_audit(frame, set(), 0, 0.3, 0, "c") == []
    assert len(sample_audit(frame, set(), 100, 0.3, 0, "c")) == 10
    assert sample_audit(frame.iloc[:0], set(), 5, 0.3, 0, "c") == []
    quotas = week_quotas(pd.Series({1: 3, 2: 3, 3: 3}), 4)
    assert quotas.tolist() == [2, 1, 1]  # ties go to the earlier week


def test_the_panel_answers_each_task_independently(tmp_path):
    from flywheel.demo.panel import SimulatedPanel

    truth = tmp_path / "hidden_truth.jsonl"
    lines = [{"id": f"ix-{i}", "true_expert": "it_help", "cause": "routing"} for i in range(600)]
    truth.write_text("\n".join(json.dumps(line) for line in lines))
    panel = SimulatedPanel(truth, list(EXPERTS), error_rate=0.2, seed=7, size=3)
    ids = [line["id"] for line in lines]
    triage, audit = panel.answer(ids), panel.answer(ids, task="audit")
    assert {r["task"] for r in audit} == {"audit"} and all(r["cause"] is None for r in audit)
    wrong = [r["correct_expert"] != "it_help" for r in audit]
    assert 0.16 < np.mean(wrong) < 0.24
    both = [
        a["correct_expert"] != "it_help" and t["correct_expert"] != "it_help"
        for a, t in zip(audit, triage, strict=True)
    ]
    assert np.mean(both) < 0.08  # independent errors: about 0.2 * 0.2, not 0.2
    by_reviewer = pd.DataFrame(audit).pivot(
        index="interaction_id", columns="reviewer", values="correct_expert"
    )
    all_three_wrong = (by_reviewer != "it_help").all(axis=1).mean()
    assert all_three_wrong < 0.03  # ~0.008: why three answers and a majority


# --- through the real Argilla server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_server):
    with embedded_argilla(tmp_path_factory.mktemp("argilla-home")) as info:
        yield info


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return small_demo_world(tmp_path_factory.mktemp("world"), EXPERTS)


def session_for(server, name, task, experts_per_record):
    from flywheel.triage.review import ReviewSession, ReviewTarget

    target = ReviewTarget(server.url, server.api_key, server.workspace, name, embedded=True)
    return ReviewSession(
        target, list(EXPERTS), experts_per_record, retry_seconds=90, log=lambda m: None, task=task
    )


def test_the_audit_goes_to_three_experts_blind_and_comes_back_without_a_cause(server, world):
    from flywheel.demo.panel import SimulatedPanel
    from flywheel.triage.review import agreement, review_queue

    out, store = world
    interactions = store.interactions_frame()
    sample = sample_audit(interactions, set(), size=24, validation_share=0.25, seed=5, cycle_id="c1")
    assert store.add_audit_items(sample) == 24
    audited = set(store.audit_frame()["interaction_id"])
    queue = interactions[interactions["id"].isin(audited)]

    audit = session_for(server, "audit-roundtrip", "audit", experts_per_record=3)
    pushed = audit.push(queue)
    assert pushed.pushed == 24
    assert audit.push(queue).pushed == 0
    assert audit.progress() == {"total": 24, "completed": 0, "pending": 24}
    with pytest.raises(ValueError, match="blind"):
        audit.push(queue, verdicts=[{"interaction_id": queue["id"].iloc[0], "cause": "routing"}])

    # blind: the question and when, nothing about the routing, the answer, the feedback or a judge
    settings = audit.dataset.settings
    assert [f.name for f in settings.fields] == ["question"]
    assert [q.name for q in settings.questions] == ["correct_expert"]
    assert {m.name for m in settings.metadata} == {"logged_at", "logged_day"}
    assert settings.distribution.min_submitted == 3
    assert "blind" in settings.guidelines
    record = next(iter(audit.dataset.records(with_suggestions=True)))
    assert set(record.fields) == {"question"} and not record.suggestions
    assert set(record.metadata) == {"logged_at", "logged_day"}

    # the triage dataset beside it, on the same store: one reviewer answers an item in both
    triage = session_for(server, "audit-roundtrip-triage", "triage", experts_per_record=1)
    triage_queue = review_queue(interactions, store.reviews_frame()).head(6)
    both = interactions[interactions["id"].isin(set(triage_queue["id"]) | {queue["id"].iloc[0]})]
    triage.push(both)
    triage_panel = SimulatedPanel(out / "hidden_truth.jsonl", list(EXPERTS), error_rate=0.05, seed=3, size=1)
    triage_panel.answer_in_argilla(triage)
    assert triage.pull(store, triage_panel.reviewers).added == len(both)

    panel = SimulatedPanel(out / "hidden_truth.jsonl", list(EXPERTS), error_rate=0.05, seed=3, size=3)
    answered = panel.answer_in_argilla(audit)
    assert answered == {"submitted": 72, "not_in_demo_truth": 0, "reviewers": 3}
    assert panel.answer_in_argilla(audit)["submitted"] == 0
    assert audit.progress() == {"total": 24, "completed": 24, "pending": 0}

    pulled = audit.pull(store, panel.reviewers)
    assert (pulled.records, pulled.answers, pulled.added) == (24, 72, 72)
    assert audit.pull(store, panel.reviewers).added == 0
    assert triage.pull(store, triage_panel.reviewers).added == 0
    answers = store.reviews_frame(task="audit")
    assert len(answers) == 72 and answers["cause"].isna().all()
    assert set(answers["origin"]) == {"simulated"}
    assert answers.groupby("interaction_id")["reviewer"].nunique().eq(3).all()
    assert set(answers["interaction_id"]) == audited
    first = queue["id"].iloc[0]
    everything = store.reviews_frame()
    reviewer_1 = everything[
        everything["interaction_id"].eq(first) & everything["reviewer"].eq("simulated-expert-1")
    ]
    assert sorted(reviewer_1["task"]) == ["audit", "triage"]
    assert store.reviews_frame(task="triage")["cause"].notna().all()

    truth = {row["id"]: row for row in map(json.loads, (out / "hidden_truth.jsonl").read_text().splitlines())}
    true_expert = answers["interaction_id"].map(lambda i: truth[i]["true_expert"] or "out_of_scope")
    assert (true_expert == answers["correct_expert"]).mean() > 0.85
    kappa = agreement(answers)
    assert kappa["items_with_overlap"] == 24
    assert kappa["fleiss_kappa"] is not None and 0.6 < kappa["fleiss_kappa"] <= 1
    assert len(kappa["cohen_kappa"]) == 3
    with pytest.raises(ValueError, match="one task"):
        agreement(store.reviews_frame())
    print(
        f"\naudit: push {pushed.records_per_s} records/s, pull {pulled.records_per_s} records/s, "
        f"Fleiss' kappa {kappa['fleiss_kappa']} (3 experts, error rate 0.05, 24 items)"
    )

    # the audit's triage twin refuses to open on a dataset with the other questions
    with pytest.raises(ValueError, match="triage questions"):
        session_for(server, "audit-roundtrip", "triage", experts_per_record=1)


def test_the_demo_source_gives_the_audit_its_own_number_of_experts(tmp_path):
    import yaml

    from flywheel.core.config import REPO_ROOT, load_config, read_config_mapping
    from flywheel.core.log_sources import log_source
    from flywheel.core.runs import create_run

    raw = read_config_mapping(REPO_ROOT / "configs" / "test.yaml")
    raw.update(
        name="tiny",
        source={"kind": "demo", "n_interactions": 60, "weeks": 2},
        review={**raw.get("review", {}), "experts_per_record": 1},
        audit={**raw.get("audit", {}), "experts_per_record": 3},
    )
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw))
    run = create_run(tmp_path / "tiny.yaml", runs_root=tmp_path / "runs")
    demo, config = log_source("demo"), load_config(run.config_path)
    demo.log_files(config, run)
    assert demo.simulated_panel(config, run).reviewers == ["simulated-expert-1"]
    audit = demo.simulated_panel(config, run, task="audit")
    assert audit.reviewers == [f"simulated-expert-{i}" for i in (1, 2, 3)]
    assert log_source("files").simulated_panel(config, run, task="audit") is None
