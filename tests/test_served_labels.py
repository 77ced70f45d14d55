"""Teacher labels and the eval's baseline once a small router serves part of the traffic: only the production
model's own decisions (logged where it answered, else asked in shadow) become teacher labels or the baseline's
decisions; a student's or cascade's own answers never do. On a real store (SQLite and PostgreSQL) holding
production-, student- and cascade-decided interactions, production and candidate shadow rows."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from conftest import ROUTING_PHRASES, good_record

from flywheel.core.accuracy import accuracy_with_ci
from flywheel.core.config import load_config
from flywheel.core.decisions import NO_EXPERT, ProductionDecisions, production_decisions, production_model
from flywheel.core.results import TriageResult, write_result
from flywheel.core.rows import content_hash, to_row
from flywheel.core.runs import RunDir
from flywheel.core.schema import Interaction
from flywheel.evaluate.cascades import ThresholdChoice, cascade_row
from flywheel.evaluate.metrics import mcnemar_paired
from flywheel.evaluate.scoring import BASELINE, baseline_row
from flywheel.evaluate.slices import Slices
from flywheel.evaluate.stage import evaluate_all, run_eval
from flywheel.finetune.stage import run_finetune
from flywheel.triage.ground_truth import build_ground_truth

EXPERTS = list(ROUTING_PHRASES)
PRODUCTION = "llama-3.1-70b-instruct"
STUDENT = "tfidf-student"
CASCADE_STUDENT = "minilm-student"  # a cascade logs its confident answers under its student's name
START = datetime(2026, 9, 7, 9, tzinfo=UTC)
CONFIG = load_config("configs/test.yaml").model_copy(update={"experts": dict.fromkeys(EXPERTS, "")})
CONFIG = CONFIG.model_copy(update={"source": CONFIG.source.model_copy(update={"kind": "files"})})


@dataclass
class Item:
    id: str
    text: str
    truth: str
    model: str  # who decided (logged)
    routed: str  # the logged decision
    satisfied: bool | None
    shadow: str | bool | None = False  # the production shadow decision; False: none, None: no single expert
    split: str | None = None  # audit split


def other(expert: str) -> str:
    return EXPERTS[(EXPERTS.index(expert) + 1) % len(EXPERTS)]


def world(n: int = 96) -> list[Item]:
    """Weeks 1-2: the production model answers (right but for a few). Weeks 3-4: a student serves, often
    wrong, and production answers a share in shadow. Weeks 5-6: a cascade: deferred queries are answered (and
    logged) by the production model, confident ones by its student. Every 4th item is audited."""
    items = []
    for i in range(n):
        truth = EXPERTS[i % 3]
        text = f"{ROUTING_PHRASES[truth][(i // 12) % 4]} ticket {i}"
        satisfied = [True, None, False][(i // 3) % 3]
        phase = 3 * i // n
        if phase == 0:
            model, routed, shadow = PRODUCTION, truth if i % 11 else other(truth), False
        elif phase == 1:
            # the student is wrong on every other item; production's shadow answers are right but for one
            model, routed = STUDENT, other(truth) if i % 2 else truth
            shadow = False if i % 3 == 2 else (None if i == n // 3 + 1 else truth)
        else:
            deferred = i % 4 == 3
            student_answer = other(truth) if i % 5 == 0 else truth
            model, routed = (PRODUCTION, truth) if deferred else (CASCADE_STUDENT, student_answer)
            shadow = False if deferred or i % 2 else truth
        split = "test" if i % 4 == 1 else "validation" if i % 8 == 3 else None
        items.append(Item(f"ix-{i:03d}", text, truth, model, routed, satisfied, shadow, split))
    return items


def fill(store, items: list[Item]) -> None:
    """The world in the store: interactions with feedback, shadow decisions (production's, and a candidate's
    that must be ignored), the audit and its experts' answers (each item's truth)."""
    rows = []
    for k, item in enumerate(items):
        feedback = None if item.satisfied is None else {"thumbs": "up" if item.satisfied else "down"}
        record = good_record(
            k,
            id=item.id,
            timestamp=(START + timedelta(hours=3 * k)).isoformat().replace("+00:00", "Z"),
            routed_expert=item.routed,
            model=item.model,
            latency_ms=1200.0 + k if item.model == PRODUCTION else 8.0,
            tokens_in=200 + k % 7,
            request={"model": item.model, "messages": [{"role": "user", "content": item.text}]},
            response={"choices": [{"index": 0, "message": {"role": "assistant", "content": item.routed}}]},
            feedback=feedback,
        )
        rows.append(to_row(Interaction.model_validate(record), content_hash(record), "test"))
    store.add_interactions(rows)
    store.apply_feedback()
    decided = START + timedelta(days=60)
    shadow = [
        {"interaction_id": i.id, "model": PRODUCTION, "role": "production", "decision": i.shadow}
        for i in items
        if i.shadow is not False
    ]
    shadow += [  # a shadow candidate's decisions are no teacher and no baseline
        {"interaction_id": i.id, "model": "candidate-x", "role": "candidate", "decision": other(i.truth)}
        for i in items
        if i.model != PRODUCTION
    ]
    store.add_shadow_decisions([{**row, "decided_at": decided} for row in shadow])
    audited = [i for i in items if i.split]
    store.add_audit_items(
        [{"interaction_id": i.id, "split": i.split, "cycle_id": "c1", "sampled_at": decided} for i in audited]
    )
    answer = {"cause": None, "origin": "test", "reviewed_at": decided}
    store.add_reviews(
        [
            {"interaction_id": i.id, "reviewer": f"r{r}", "correct_expert": i.truth, **answer}
            for i in audited
            for r in range(3)
        ],
        task="audit",
    )


def ground_truth(store, folder, with_shadow: bool = True):
    """The ground truth of the store's world (no near-duplicate check: no embedding model needed)."""
    return build_ground_truth(
        store.interactions_frame(),
        store.reviews_frame(),
        EXPERTS,
        folder,
        audit=store.audit_frame(),
        seed=0,
        near_duplicate_threshold=None,
        shadow=store.shadow_frame("production") if with_shadow else None,
    )


def expected_production(item: Item) -> str | None:
    if item.model == PRODUCTION:
        return item.routed
    if item.shadow is False:
        return None
    return NO_EXPERT if item.shadow is None else item.shadow


@pytest.fixture
def served(any_store):
    items = world()
    fill(any_store, items)
    return any_store, items


def test_production_decisions_are_logged_or_shadow_never_a_small_routers(served):
    store, items = served
    interactions = store.interactions_frame()
    shadow = store.shadow_frame()  # both roles: only production's count
    assert production_model(interactions) == PRODUCTION  # it decided the earliest interaction
    decisions = production_decisions(interactions, shadow, PRODUCTION)
    assert decisions.to_dict() == {item.id: expected_production(item) for item in items}
    assert decisions.notna().sum() < len(items)  # some student answers have no production decision

    production = ProductionDecisions.of(interactions, shadow)
    assert set(production.logged[production.logged].index) == {i.id for i in items if i.model == PRODUCTION}
    assert set(production.from_shadow[production.from_shadow].index) == {
        i.id for i in items if i.model != PRODUCTION and i.shadow is not False
    }
    # the override names production; one naming no model in the store is a clear error, not silent emptiness
    assert ProductionDecisions.of(interactions, shadow, override=STUDENT).model == STUDENT
    with pytest.raises(ValueError, match=r"'llama-70b'.*models in the store"):
        ProductionDecisions.of(interactions, shadow, override="llama-70b")


def test_teacher_labels_come_only_from_production_decisions(served, tmp_path):
    store, items = served
    truth = ground_truth(store, tmp_path / "gt")
    teachable = [i for i in items if not i.split and i.satisfied is not False]
    expected = {i.id: expected_production(i) for i in teachable}
    labelled = {i: label for i, label in expected.items() if label in EXPERTS}
    train = truth.train.set_index("id")
    assert train["label"].to_dict() == labelled
    # the student's own wrong answers never became a label
    students = [i for i in teachable if i.model != PRODUCTION]
    assert any(i.routed != i.truth and i.id in labelled for i in students)
    wrong = [i for i in students if i.id in labelled and i.routed != i.truth]
    assert all(train.loc[i.id, "label"] != i.routed for i in wrong)

    card = truth.card["teacher_decisions"]
    no_teacher = [i for i in teachable if expected[i.id] is None]
    assert card["production_model"] == PRODUCTION
    assert card["no_teacher_decision"] == len(no_teacher) > 0
    assert card["no_teacher_decision_by_source"] == {
        "teacher_satisfied": sum(i.satisfied is True for i in no_teacher),
        "teacher_no_feedback": sum(i.satisfied is None for i in no_teacher),
    }
    from_shadow = [i for i in teachable if i.model != PRODUCTION and i.id in labelled]
    assert card["from_shadow_by_source"] == {
        "teacher_satisfied": sum(i.satisfied is True for i in from_shadow),
        "teacher_no_feedback": sum(i.satisfied is None for i in from_shadow),
    }
    assert sum(card["from_shadow_by_source"].values()) > 0

    # without the shadow decisions, the student-answered items simply have no teacher
    blind = ground_truth(store, tmp_path / "blind", with_shadow=False)
    assert set(blind.train["id"]) == {i.id for i in teachable if i.model == PRODUCTION}
    assert blind.card["teacher_decisions"]["no_teacher_decision"] == len(students)


def test_the_baseline_scores_only_items_with_a_production_decision(served, tmp_path):
    """The eval stage end to end on the store: a real TF-IDF student trained on the ground truth; the baseline
    scores where production decided (logged or shadow), every other model on all test items."""
    store, items = served
    run = RunDir(tmp_path / "run")
    truth = ground_truth(store, run.artifact("ground_truth"))
    review = {"mode": "simulate", "simulated": True, "progress": {}, "agreement": {}}
    triaged = TriageResult(reviewed=0, review=review, awaiting_review=False, ground_truth=truth.ref())
    write_result(run, triaged)
    write_result(run, run_finetune(run, CONFIG, ["tfidf-logreg"], {}))
    evaluation = run_eval(run, CONFIG, store)

    by_id = {i.id: i for i in items}
    test = evaluation.test
    production = [expected_production(by_id[i]) for i in test["id"]]
    known = [k for k, p in enumerate(production) if p is not None]
    baseline, student = evaluation.rows[0], evaluation.rows_of("single")[0]
    assert 0 < len(known) < len(test)
    assert (baseline["baseline_n"], baseline["baseline_missing"]) == (len(known), len(test) - len(known))
    labels = test["label"].tolist()
    scored = accuracy_with_ci([labels[k] for k in known], [production[k] for k in known])
    assert (baseline["accuracy"], baseline["n"]) == (scored["accuracy"], len(known))
    assert baseline["model"] == PRODUCTION
    assert evaluation.predictions[BASELINE] == production
    # latency and tokens only from what production answered itself (a student's 8 ms never counts)
    answered = [by_id[i] for i in test["id"] if by_id[i].model == PRODUCTION]
    assert baseline["p50_ms"] == pytest.approx(
        np.median([1200.0 + items.index(i) for i in answered])
    ) and baseline["latency_samples"] == len(answered)

    assert student["n"] == len(test)  # every other model scores on all test items
    decisions = evaluation.predictions[student["name"]]
    paired = mcnemar_paired(
        [labels[k] for k in known], [production[k] for k in known], [decisions[k] for k in known]
    )
    assert (student["only_baseline_correct"], student["only_candidate_correct"]) == (
        paired["a_only_correct"], paired["b_only_correct"],
    )  # fmt: skip
    assert student["mcnemar_p"] == paired["p_value"]
    for cascade in evaluation.rows_of("cascade"):
        assert cascade["n"] == len(known)
    summary_keys = {"baseline_n", "baseline_missing"}
    assert summary_keys <= set(baseline)


def test_a_cascade_is_scored_where_its_deferrals_are_known():
    """A deferred query production never saw has no decision: the cascade scores on the items with one."""
    test = pd.DataFrame(
        {"id": ["t0", "t1", "t2", "t3"], "text": ["a", "b", "c", "d"], "label": ["it_help"] * 4}
    )
    proba = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.4, 0.3, 0.3], [0.2, 0.7, 0.1]])
    production = ["it_help", "it_help", None, None]  # t2 deferred and unknown; t3 answered by the student
    student_row = {"name": "s", "cost_per_1k": 0.01, "cost_basis": "hw"}
    baseline = {"cost_per_1k": 1.0, "cost_basis": "tokens"}
    row, decisions = cascade_row(
        student_row, [0.01], proba, EXPERTS, ThresholdChoice(0.5, 0.5, 1.0, 1.0), test,
        np.array([1.0, 1.0, 1.0, 1.0]), baseline, Slices(), 0.05, production=production,
    )  # fmt: skip
    assert decisions == ["it_help", "it_help", None, "hr_benefits"]
    assert (row["n"], row["correct"], row["deferral_share"]) == (2, 2, 0.5)


def test_only_production_logs_give_the_ground_truth_and_eval_of_before(store, tmp_path):
    """Today's demo: every interaction decided by the production model. Reading the store's models and shadow
    table changes nothing: the same ground truth (version and Parquet bytes) and the same baseline row."""
    items = [i for i in world() if i.model == PRODUCTION]
    fill(store, items)
    served = ground_truth(store, tmp_path / "a")
    kwargs = {"audit": store.audit_frame(), "seed": 0, "near_duplicate_threshold": None}
    frame = store.interactions_frame().drop(columns="model")  # as before: every decision is production's
    before = build_ground_truth(frame, store.reviews_frame(), EXPERTS, tmp_path / "b", **kwargs)
    assert served.version == before.version
    for split in ("train", "validation", "test"):
        name = f"{split}.parquet"
        assert (served.folder / name).read_bytes() == (before.folder / name).read_bytes()
    assert served.card["teacher_decisions"]["no_teacher_decision"] == 0

    logs = store.interactions_frame(["id", "model", "latency_ms", "tokens_in", "tokens_out", "routed_expert"])
    production = ProductionDecisions.of(logs, store.shadow_frame("production"))
    slices = Slices()
    assert baseline_row(served.test, logs, CONFIG.eval, slices, production) == baseline_row(
        served.test, logs, CONFIG.eval, slices
    )
    plain = evaluate_all(CONFIG, served.test, logs, {}, validation=served.validation)
    read = evaluate_all(CONFIG, served.test, logs, {}, validation=served.validation, production=production)
    assert plain.rows == read.rows and plain.predictions == read.predictions
    assert plain.rows[0]["baseline_missing"] == 0


class PlantedRouter:
    """A stand-in student whose decision and confidence are planted per text (as in test_cascades)."""

    name, labels = "planted", ["a", "b"]

    def __init__(self, planted: dict[str, tuple[str, float]]):
        self.planted = planted

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            label, p = self.planted[text]
            rows.append([p, 1 - p] if label == "a" else [1 - p, p])
        return np.array(rows)

    def predict(self, texts: list[str]) -> list[str]:
        return [self.planted[t][0] for t in texts]


def test_cascade_thresholds_use_only_validation_items_with_a_production_decision(tmp_path, monkeypatch):
    """Validation items a student answered unseen by production say nothing about deferring: counted as
    production errors they would make the student alone look good enough. Production is right on the 6 items
    it saw; the student errs on its 2 least confident of those: the cascade defers them."""
    import flywheel.evaluate.stage as stage_module
    from flywheel.core.routers import write_candidate_card

    config = CONFIG.model_copy(update={"experts": {"a": "", "b": ""}})
    validation = pd.DataFrame({"id": [f"v{k}" for k in range(10)], "label": ["a", "b"] * 5})
    test = pd.DataFrame({"id": [f"t{k}" for k in range(6)], "label": ["a", "b"] * 3})
    for frame in (validation, test):  # the logged decision is a small router's, wrong everywhere
        frame["text"] = frame["id"]
        frame["routed_expert"] = frame["label"].map({"a": "b", "b": "a"})
    confidence = [0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.56, 0.57, 0.58, 0.59]  # v6-v9: unseen by production
    planted = {f"v{k}": (("b" if label == "a" else "a") if k < 2 else label, c)
               for k, (label, c) in enumerate(zip(validation["label"], confidence, strict=True))}  # fmt: skip
    planted |= {f"t{k}": (label, 0.6 if k < 3 else 0.9) for k, label in enumerate(test["label"])}
    folder = tmp_path / "planted"
    folder.mkdir()
    write_candidate_card(folder, kind="tfidf_logreg", name="planted", labels=["a", "b"], parameters=1)
    monkeypatch.setattr(stage_module, "load_router", lambda _: PlantedRouter(planted))

    seen = ["v0", "v1", "v2", "v3", "v4", "v5", "t0", "t3", "t4", "t5"]  # production's decisions: right
    ids = [*validation["id"], *test["id"]]
    labels = dict(zip(ids, [*validation["label"], *test["label"]], strict=True))
    production = ProductionDecisions(
        model=PRODUCTION,
        decision=pd.Series([labels[i] if i in seen else None for i in ids], index=ids, dtype=object),
        logged=pd.Series([i in seen for i in ids], index=ids),
    )
    logs = pd.DataFrame({"id": ids, "model": [PRODUCTION if i in seen else STUDENT for i in ids]})
    logs = logs.assign(latency_ms=1000.0, tokens_in=200, tokens_out=4)
    candidates = {"planted": folder}
    evaluation = evaluate_all(config, test, logs, candidates, validation=validation, production=production)
    baseline, cascade = evaluation.rows[0], evaluation.rows_of("cascade")[0]
    assert (baseline["baseline_n"], baseline["baseline_missing"], baseline["accuracy"]) == (4, 2, 1.0)
    assert cascade["validation_deferral_share"] == pytest.approx(2 / 6)  # chosen on the 6 items seen
    assert cascade["threshold"] == pytest.approx(0.65)
    # on test it defers t0-t2 (confidence 0.6): t1 and t2 unknown, so it scores on the 4 items seen
    assert evaluation.predictions[cascade["name"]] == ["a", None, None, "b", "a", "b"]
    assert (cascade["n"], cascade["accuracy"], cascade["deferral_share"]) == (4, 1.0, 0.5)
