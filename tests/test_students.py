"""The student families on a small separable routing task: each trains, scores (predict_proba rows sum to 1,
argmax = predict), reloads with identical predictions and records what it chose; the time budget, the
search, the label-source ablation and recipe checks."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import ROUTING_PHRASES

from flywheel.core.config import AblationConfig, CandidateConfig, Config, load_config
from flywheel.core.routers import load_router
from flywheel.finetune import budget as budget_module
from flywheel.finetune.ablation import ablation_candidate, train_ablation
from flywheel.finetune.budget import TimeBudget
from flywheel.finetune.recipes import check_recipe
from flywheel.finetune.train import train_candidate

EXPERTS = list(ROUTING_PHRASES)
PROBES = ["laptop will not boot", "parental leave", "parking hours", "vpn password please"]


def frame(templates: list[str], source: str = "expert") -> pd.DataFrame:
    rows = [(t.format(p), e) for e, ps in ROUTING_PHRASES.items() for p in ps for t in templates]
    data = pd.DataFrame(rows, columns=["text", "label"])
    return data.assign(label_source=source, weight=1.0)


TRAIN = frame(["{} please", "{} asap", "hi, {}", "{}"])
VALIDATION = frame(["{}?", "question: {}"], source="audit")


def check_scores(folder, trained_on: pd.DataFrame) -> np.ndarray:
    """predict_proba's shape and sums, predict = its argmax, and a reload gives the same numbers."""
    router = load_router(folder)
    proba = router.predict_proba(PROBES)
    assert router.labels == EXPERTS and proba.shape == (len(PROBES), len(EXPERTS))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert router.predict(PROBES) == [EXPERTS[i] for i in proba.argmax(axis=1)]
    np.testing.assert_allclose(load_router(folder).predict_proba(PROBES), proba, atol=1e-6)
    accuracy = (pd.Series(router.predict(trained_on["text"].tolist())) == trained_on["label"].values).mean()
    assert accuracy >= 0.9, accuracy
    return proba


def test_tfidf_logreg_chooses_c_by_cross_validation(tmp_path):
    candidate = CandidateConfig(name="tfidf", kind="tfidf_logreg", Cs=[0.1, 10.0], cv=3)
    record = train_candidate(candidate, TRAIN, EXPERTS, tmp_path / "t", 0, validation=VALIDATION)
    check_scores(tmp_path / "t", VALIDATION)
    [tried] = record["search"]
    assert set(tried["cv_accuracy"]) == {"0.1", "10"} and record["chosen"]["C"] in (0.1, 10.0)
    assert record["validation_accuracy"] >= 0.9 and record["train_examples"] == len(TRAIN)
    saved = json.loads((tmp_path / "t" / "training.json").read_text())
    assert saved["chosen"] == record["chosen"] and saved["train_seconds"] > 0


def test_tfidf_search_trials_are_scored_on_validation_and_seeded(tmp_path):
    candidate = CandidateConfig(name="tfidf", kind="tfidf_logreg", search_trials=3, Cs=[1.0, 10.0], cv=3)
    first = train_candidate(candidate, TRAIN, EXPERTS, tmp_path / "a", 0, validation=VALIDATION)
    again = train_candidate(candidate, TRAIN, EXPERTS, tmp_path / "b", 0, validation=VALIDATION)
    assert len(first["search"]) == 4  # the recipe as given, then 3 sampled settings
    assert first["search"] == again["search"]
    assert first["validation_accuracy"] == max(t["validation_accuracy"] for t in first["search"])


def test_embedding_logreg_saves_the_head_and_embeds_at_inference(tmp_path):
    candidate = CandidateConfig(name="emb", kind="embedding_logreg", model="minilm-l6", cv=3)
    record = train_candidate(candidate, TRAIN, EXPERTS, tmp_path / "e", 0, validation=VALIDATION)
    assert (tmp_path / "e" / "head.joblib").is_file()
    assert json.loads((tmp_path / "e" / "candidate.json").read_text())["source"] == "minilm-l6"
    check_scores(tmp_path / "e", VALIDATION)
    assert record["validation_accuracy"] >= 0.8 and record["chosen"]["C"] > 0


def test_setfit_trains_within_its_steps_and_reloads(tmp_path):
    candidate = CandidateConfig(name="sf", kind="setfit", model="minilm-l6", max_steps=12, batch_size=16)
    record = train_candidate(candidate, TRAIN, EXPERTS, tmp_path / "s", 0, validation=VALIDATION)
    assert record["steps"] == 12 and record["validation_accuracy"] >= 0.8
    check_scores(tmp_path / "s", TRAIN)


def test_encoder_early_stopping_keeps_the_best_validation_step(tmp_path):
    candidate = CandidateConfig(
        name="enc",
        kind="encoder_classifier",
        model="minilm-l6",
        max_length=32,
        max_steps=24,
        eval_strategy="steps",
        eval_steps=4,
        learning_rate=3e-4,
        per_device_train_batch_size=12,
    )
    record = train_candidate(candidate, TRAIN, EXPERTS, tmp_path / "m", 0, validation=VALIDATION)
    curve = dict(record["validation_curve"])
    assert record["chosen"]["step"] in curve
    assert record["validation_accuracy"] == max(curve.values()) == curve[record["chosen"]["step"]]
    best = max(curve.values())  # early stopping: at most PATIENCE evaluations after the first best
    first_best = min(step for step, accuracy in curve.items() if accuracy == best)
    assert max(curve) <= first_best + 2 * 4
    assert not (tmp_path / "m" / "checkpoints").exists()
    check_scores(tmp_path / "m", TRAIN)


def test_time_budget_derives_the_steps_from_the_measured_pace(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: clock.now)
    budget = TimeBudget(seconds=100, warmup_steps=3, eval_share=0.2)
    args = SimpleNamespace(eval_strategy="epoch", save_strategy="epoch")
    state, control = SimpleNamespace(global_step=0), SimpleNamespace(should_training_stop=False)
    budget.on_train_begin(args, state, control)
    stopped = None
    for step in range(1, 1000):
        clock.now += 10.0 if step == 1 else 2.0  # a slow first step (start-up), then 2 s a step
        state.global_step = step
        budget.on_step_end(args, state, control)
        if control.should_training_stop:
            stopped = step
            break
    # 80 s for training, 10 s spent on the first step, 2 s a step after it: 1 + 35 steps
    assert budget.seconds_per_step == pytest.approx(2.0) and stopped == budget.step_budget == 36
    assert control.should_evaluate and control.should_save


def test_min_epochs_run_whatever_the_clock_says(monkeypatch):
    """A busy machine (10 s a step against a 30 s budget) still trains the recipe's floor of 2 epochs of
    10 steps, then stops at once; without the floor the clock stops it after 4 steps."""
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: clock.now)
    args = SimpleNamespace(eval_strategy="epoch", save_strategy="epoch")

    def stopped_at(budget: TimeBudget) -> int | None:
        state, control = (
            SimpleNamespace(global_step=0, epoch=0.0),
            SimpleNamespace(should_training_stop=False),
        )
        budget.on_train_begin(args, state, control)
        for step in range(1, 100):
            clock.now += 10.0
            state.global_step, state.epoch = step, step / 10
            budget.on_step_end(args, state, control)
            if control.should_training_stop:
                return step
        return None

    assert stopped_at(TimeBudget(seconds=30, estimate=False)) == 4  # past 30 s
    floored = TimeBudget(seconds=30, estimate=False, min_epochs=2)
    assert stopped_at(floored) == 20 and floored.record()["stopped_by_budget_at_step"] == 20


def test_no_budget_never_stops():
    budget = TimeBudget(seconds=None)
    state, control = SimpleNamespace(global_step=5), SimpleNamespace(should_training_stop=False)
    budget.on_train_begin(None, state, control)
    budget.on_step_end(None, state, control)
    assert not control.should_training_stop and budget.record()["step_budget"] is None


def test_label_source_ablation_trains_a_folder_per_subset(tmp_path):
    sources = [("{} please", "expert"), ("{} asap", "teacher_satisfied"), ("hi, {}", "teacher_no_feedback")]
    train = pd.concat([frame([template], source) for template, source in sources])
    candidate = CandidateConfig(name="tfidf", kind="tfidf_logreg", cv=2)
    folders = train_ablation(candidate, train, VALIDATION, dict.fromkeys(EXPERTS, ""), tmp_path, seed=0)
    assert set(folders) == {"expert", "expert+teacher_satisfied", "all"}
    records = {subset: json.loads((f / "training.json").read_text()) for subset, f in folders.items()}
    examples = {subset: record["train_examples"] for subset, record in records.items()}
    assert examples == {"expert": 12, "expert+teacher_satisfied": 24, "all": 36}
    assert all(load_router(folder).predict(PROBES[:1]) for folder in folders.values())


def test_ablation_names_a_candidate_of_the_config():
    config = load_config("configs/test.yaml")
    assert ablation_candidate(config).name == config.ablation.candidate
    wrong = config.model_copy(update={"ablation": AblationConfig(candidate="nope")})
    with pytest.raises(ValueError, match=r"ablation\.candidate 'nope' is not one of"):
        ablation_candidate(wrong)
    assert ablation_candidate(config.model_copy(update={"ablation": None})) is None


def test_unknown_recipe_keys_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['C'\]: a tfidf_logreg candidate takes \['Cs'"):
        CandidateConfig(name="t", kind="tfidf_logreg", C=3)
    with pytest.raises(ValueError, match=r"\['lerning_rate'\]: a embedding_logreg candidate takes"):
        CandidateConfig(name="e", kind="embedding_logreg", lerning_rate=3)
    with pytest.raises(ValueError, match=r"\['num_epoch'\]: not a field of TrainingArguments.*num_epochs"):
        check_recipe(CandidateConfig(name="s", kind="setfit", num_epoch=2))
    with pytest.raises(ValueError, match="search_trials is not available for causal_lm"):
        CandidateConfig(name="c", kind="causal_lm", model="tiny-llama", search_trials=2)


def test_the_search_keeps_the_best_trials_files_as_the_candidate(tmp_path):
    """Optuna trials train into trials/<n>/; the best one's files become the candidate folder's."""
    from flywheel.finetune.budget import search

    def space(trial):
        return {"x": trial.suggest_float("x", 0.0, 1.0)}

    def train_trial(params, folder, seconds):
        folder.mkdir(parents=True)
        (folder / "model.txt").write_text(str(params["x"]))
        score = 1 - abs(params["x"] - 0.3)
        return score, {"validation_accuracy": score}

    record, tried = search(train_trial, space, n_trials=6, budget_s=None, out_dir=tmp_path, seed=0)
    best = max(tried, key=lambda t: t["validation_accuracy"])
    assert len(tried) == 6 and record["validation_accuracy"] == best["validation_accuracy"]
    assert float((tmp_path / "model.txt").read_text()) == best["x"]
    assert not (tmp_path / "trials").exists()


def test_an_ensemble_averages_its_members_probabilities_and_travels_whole(tmp_path):
    """Soft voting over two trained students: its probabilities are the weighted mean of theirs, its
    folder holds copies of them (deleting the originals changes nothing) and a cascade can take it."""
    from flywheel.core.cascade import write_cascade
    from flywheel.finetune.train import train_all

    candidates = [
        CandidateConfig(name="tfidf", kind="tfidf_logreg", Cs=[1.0], cv=2),
        CandidateConfig(name="emb", kind="embedding_logreg", model="minilm-l6", Cs=[1.0], cv=2),
        CandidateConfig(name="both", kind="ensemble", members=["tfidf", "emb"], weights=[3.0, 1.0]),
    ]
    records = train_all(candidates, TRAIN, EXPERTS, tmp_path / "c", 0, validation=VALIDATION)
    assert records["both"]["members"] == ["tfidf", "emb"] and records["both"]["trainable_parameters"] == 0
    assert set(records["both"]["member_validation_accuracy"]) == {"tfidf", "emb"}
    parts = [load_router(tmp_path / "c" / name).predict_proba(PROBES) for name in ("tfidf", "emb")]
    expected = 0.75 * parts[0] + 0.25 * parts[1]
    for name in ("tfidf", "emb"):
        (tmp_path / "c" / name / "candidate.json").unlink()  # the ensemble reads its own copies
    proba = check_scores(tmp_path / "c" / "both", VALIDATION)
    np.testing.assert_allclose(proba, expected, atol=1e-9)
    cascade = write_cascade(tmp_path / "cascade", tmp_path / "c" / "both", 0.5, "both+defer")
    production = SimpleNamespace(name="production", predict=lambda texts: ["facilities"] * len(texts))
    decided = load_router(cascade, production=production).decide(PROBES)
    assert decided.deferred.tolist() == (expected.max(axis=1) < 0.5).tolist()


def test_ensemble_members_are_earlier_scoring_candidates():
    base = load_config("configs/test.yaml").model_dump()
    names = [c["name"] for c in base["candidates"]]

    def config_with(*candidates):
        return Config.model_validate({**base, "candidates": list(candidates)})

    vote = {"name": "vote", "kind": "ensemble", "members": names[:2]}
    assert config_with(*base["candidates"], vote).candidates[-1].members == names[:2]
    with pytest.raises(ValueError, match=r"member .* is not a candidate listed before it"):
        config_with(vote, *base["candidates"])
    endpoint = {"name": "hosted", "kind": "endpoint", "endpoint": {"base_url": "http://x/v1", "model": "m"}}
    with pytest.raises(ValueError, match="member 'hosted' is a endpoint candidate"):
        config_with(*base["candidates"], endpoint, {**vote, "members": [names[0], "hosted"]})
    with pytest.raises(ValueError, match="two or more distinct members"):
        CandidateConfig(name="v", kind="ensemble", members=[names[0]])
    with pytest.raises(ValueError, match="one positive weight per member"):
        CandidateConfig(name="v", kind="ensemble", members=["a", "b"], weights=[1.0, 0.0])
    with pytest.raises(ValueError, match="`members` is required for kind ensemble"):
        CandidateConfig(name="v", kind="ensemble")
