"""The review budget: at most `review.budget` records per cycle, split between the policies by their shares,
unused share flowing on, each chosen record recorded with its policy, and what each policy bought.

The policy functions are tested on frames; the triage stage is driven for real on a store (SQLite and
PostgreSQL) with a real promoted router, and once through the real Argilla server with the demo's
simulated experts."""

import json
import random

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, SMALL_CATALOG, embedded_argilla, good_record
from tiny_router import TINY_EXAMPLES, train_tiny_router

from flywheel.core.config import REVIEW_POLICIES, ReviewConfig
from flywheel.triage.budget import (
    allocate,
    audit_sample_size,
    policy_quotas,
    policy_yield,
    rank_judge_flags,
    rank_unsatisfied,
    reference_decisions,
    uncertainty_scores,
)

DEFAULT = {"audit": 0.5, "judge_flag": 0.3, "uncertainty": 0.2}
EVEN = {"audit": 0.25, "judge_flag": 0.25, "uncertainty": 0.25, "unsatisfied": 0.25}


def ids(prefix, n):
    return [(f"{prefix}{i:03d}", float(n - i)) for i in range(n)]


# --- config ------------------------------------------------------------------------------------------------
def test_the_config_names_known_policies_whose_shares_sum_to_one():
    review = ReviewConfig()
    assert review.budget is None and review.policies == DEFAULT
    assert ReviewConfig(budget=40, policies={"unsatisfied": 1.0}).policies == {"unsatisfied": 1.0}
    with pytest.raises(ValueError, match=r"unknown review policy \['random'\]: one of"):
        ReviewConfig(policies={"audit": 0.5, "random": 0.5})
    with pytest.raises(ValueError, match=r"must sum to 1, got 0\.9"):
        ReviewConfig(policies={"audit": 0.6, "judge_flag": 0.3})
    with pytest.raises(ValueError, match=r">= 0, got \['judge_flag'\]"):
        ReviewConfig(policies={"audit": 1.5, "judge_flag": -0.5})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ReviewConfig(budget=-1)


# --- quotas and allocation --------------------------------------------------------------------------------
def test_quotas_add_up_to_the_budget_each_within_one_record_of_its_share():
    assert policy_quotas(10, DEFAULT) == {"audit": 5, "judge_flag": 3, "uncertainty": 2}
    assert policy_quotas(7, DEFAULT) == {"audit": 4, "judge_flag": 2, "uncertainty": 1}  # 3.5, 2.1, 1.4
    assert policy_quotas(0, DEFAULT) == {"audit": 0, "judge_flag": 0, "uncertainty": 0}
    rng = random.Random(3)
    for _ in range(300):
        names = rng.sample(REVIEW_POLICIES, rng.randint(1, 4))
        weights = [rng.random() for _ in names]
        shares = {name: w / sum(weights) for name, w in zip(names, weights, strict=True)}
        budget = rng.randint(0, 500)
        quotas = policy_quotas(budget, shares)
        assert sum(quotas.values()) == budget
        assert all(abs(quotas[n] - budget * shares[n]) < 1 for n in names)
    with pytest.raises(ValueError, match="unknown review policy"):
        policy_quotas(5, {"random": 1.0})
    assert audit_sample_size(400, None, DEFAULT) == 400  # no budget: the audit's own size
    assert audit_sample_size(400, 100, DEFAULT) == 50
    assert audit_sample_size(30, 100, DEFAULT) == 30
    assert audit_sample_size(30, 100, {"judge_flag": 1.0}) == 0


def test_each_policy_takes_its_share_when_it_has_candidates_and_never_more_than_the_budget():
    ranked = {"audit": ids("a", 50), "judge_flag": ids("j", 50), "uncertainty": ids("u", 50)}
    allocation = allocate(20, DEFAULT, ranked)
    assert allocation.spent == {"audit": 10, "judge_flag": 6, "uncertainty": 4}
    assert allocation.chosen["judge_flag"] == ids("j", 50)[:6]  # the best first
    assert len(allocation.ids()) == len(set(allocation.ids())) == 20
    rng = random.Random(0)
    for _ in range(200):
        budget = rng.randint(0, 60)
        pool = [f"x{i}" for i in range(40)]  # candidates overlap between policies
        ranked = {p: [(i, None) for i in rng.sample(pool, rng.randint(0, 40))] for p in REVIEW_POLICIES}
        chosen = allocate(budget, EVEN, ranked)
        assert len(chosen.ids()) == len(set(chosen.ids())) <= budget
        taken = set(chosen.ids())
        for policy, picks in chosen.chosen.items():
            assert {i for i, _ in picks} <= {i for i, _ in ranked[policy]}
            if len(picks) < chosen.quotas[policy]:  # short of its quota: it had nothing more to take
                assert {i for i, _ in ranked[policy]} <= taken


def test_unused_share_flows_to_the_next_policy_in_order():
    shares = {"audit": 0.5, "judge_flag": 0.3, "uncertainty": 0.2}
    few_audit = {"audit": ids("a", 3), "judge_flag": ids("j", 50), "uncertainty": ids("u", 50)}
    assert allocate(20, shares, few_audit).spent == {"audit": 3, "judge_flag": 13, "uncertainty": 4}
    few_flags = {"audit": ids("a", 3), "judge_flag": ids("j", 2), "uncertainty": ids("u", 50)}
    assert allocate(20, shares, few_flags).spent == {"audit": 3, "judge_flag": 2, "uncertainty": 15}
    # the last listed policy passes nothing on: an unlisted policy gets nothing, whatever is left
    starved = {"audit": [], "judge_flag": [], "uncertainty": ids("u", 2), "unsatisfied": ids("s", 50)}
    assert allocate(20, shares, starved).spent == {"audit": 0, "judge_flag": 0, "uncertainty": 2}
    # a policy listed with share 0 takes only what is left to it
    sink = {**shares, "unsatisfied": 0.0}
    assert allocate(20, sink, starved).spent == {
        "audit": 0,
        "judge_flag": 0,
        "uncertainty": 2,
        "unsatisfied": 18,
    }


def test_a_skipped_uncertainty_gives_its_share_to_the_judges_flags_and_says_so():
    ranked = {"audit": ids("a", 50), "judge_flag": ids("j", 50), "uncertainty": ids("u", 50)}
    why = {"uncertainty": "no promoted router"}
    allocation = allocate(20, DEFAULT, ranked, skipped=why)
    assert allocation.spent == {"audit": 10, "judge_flag": 10, "uncertainty": 0}
    assert allocation.reassigned == {"uncertainty": "judge_flag"}
    assert allocation.summary()["skipped"] == why and allocation.summary()["quotas"]["uncertainty"] == 4
    # without judge_flag listed, the skipped share flows on like any unused one
    no_flags = {"audit": 0.5, "uncertainty": 0.3, "unsatisfied": 0.2}
    ranked["unsatisfied"] = ids("s", 50)
    allocation = allocate(20, no_flags, ranked, skipped=why)
    assert allocation.spent == {"audit": 10, "uncertainty": 0, "unsatisfied": 10}
    assert allocation.reassigned == {}


def test_no_record_is_chosen_twice_nor_one_excluded():
    same = [("x1", 0.9), ("x2", 0.8), ("x3", 0.7)]
    ranked = {"audit": [("x1", None)], "judge_flag": same, "uncertainty": same, "unsatisfied": same}
    shares = {"audit": 0.25, "judge_flag": 0.25, "uncertainty": 0.25, "unsatisfied": 0.25}
    allocation = allocate(8, shares, ranked, exclude={"x3"})
    assert allocation.chosen == {
        "audit": [("x1", None)],
        "judge_flag": [("x2", 0.8)],
        "uncertainty": [],
        "unsatisfied": [],
    }
    rows = allocation.rows("c1")
    assert [(r["interaction_id"], r["task"], r["policy"]) for r in rows] == [
        ("x1", "audit", "audit"),
        ("x2", "triage", "judge_flag"),
    ]


# --- the policies' rankings -------------------------------------------------------------------------------
def test_judge_flags_rank_routing_errors_first_by_confidence_then_the_least_sure_others():
    queue = pd.DataFrame({"id": ["q1", "q2", "q3", "q4", "q5"]})
    suggestions = pd.DataFrame(
        {
            "interaction_id": ["q1", "q2", "q3", "q4", "elsewhere"],
            "cause": ["generation", "routing", "retrieval", "routing", "routing"],
            "confidence": [0.9, 0.6, 0.3, 0.8, 1.0],
        }
    )
    ranked = rank_judge_flags(queue, suggestions)
    assert [i for i, _ in ranked] == ["q4", "q2", "q3", "q1"]  # q5: no verdict; "elsewhere": not queued
    assert [round(p, 3) for _, p in ranked] == [1.8, 1.6, 0.7, 0.1]
    assert rank_judge_flags(queue, None) == [] and rank_judge_flags(queue.iloc[0:0], suggestions) == []


def test_uncertainty_is_the_routers_doubt_about_the_production_decision():
    labels = ["it_help", "facilities"]
    proba = np.array([[0.95, 0.05], [0.55, 0.45], [0.1, 0.9], [0.5, 0.5]])
    scores = uncertainty_scores(proba, labels, ["it_help", "it_help", "it_help", "out_of_scope"])
    assert np.allclose(scores, [0.05, 0.45, 0.9, 1.0])  # agrees, unsure, disagrees, not one of its labels
    with pytest.raises(ValueError, match="proba must be"):
        uncertainty_scores(proba, labels, ["it_help"])
    candidates = pd.DataFrame({"id": ["a", "b"], "routed_expert": ["it_help", "it_help"]})
    shadow = pd.DataFrame({"interaction_id": ["b"], "decision": ["facilities"]})
    assert reference_decisions(candidates, shadow) == ["it_help", "facilities"]
    assert reference_decisions(candidates, shadow.iloc[0:0]) == ["it_help", "it_help"]


def test_unsatisfied_takes_the_most_recent_first_and_ties_by_id():
    queue = pd.DataFrame(
        {
            "id": ["old", "new-b", "new-a", "mid"],
            "timestamp": pd.to_datetime(
                ["2026-09-01T10:00Z", "2026-09-20T10:00Z", "2026-09-20T10:00Z", "2026-09-10T10:00Z"]
            ),
        }
    )
    assert [i for i, _ in rank_unsatisfied(queue)] == ["new-a", "new-b", "mid", "old"]
    assert rank_unsatisfied(queue)[0][1] == pd.Timestamp("2026-09-20T10:00Z").timestamp()
    shuffled = queue.sample(frac=1, random_state=4)
    assert rank_unsatisfied(shuffled) == rank_unsatisfied(queue)


def test_the_bought_table_counts_answers_and_routing_errors_per_policy():
    interactions = pd.DataFrame(
        {"id": [f"i{k}" for k in range(7)], "routed_expert": ["it_help"] * 6 + ["facilities"]}
    )
    selections = pd.DataFrame(
        {
            "interaction_id": ["i0", "i1", "i2", "i3", "i4", "i5", "i6"],
            "task": ["audit", "audit", "audit", "triage", "triage", "triage", "triage"],
            "policy": ["audit", "audit", "audit", "judge_flag", "judge_flag", "judge_flag", "uncertainty"],
        }
    )

    def answer(i, reviewer, expert, task):
        return {"interaction_id": i, "reviewer": reviewer, "correct_expert": expert, "task": task}

    reviews = pd.DataFrame(
        [
            # i0: the audit's majority says facilities: an error; i1: agreed; i2: never answered
            answer("i0", "e1", "facilities", "audit"),
            answer("i0", "e2", "facilities", "audit"),
            answer("i0", "e3", "it_help", "audit"),
            answer("i1", "e1", "it_help", "audit"),
            answer("i1", "e2", "it_help", "triage"),  # another task's answer does not count for the audit
            answer("i3", "e1", "hr_benefits", "triage"),  # an error
            answer("i4", "e1", "out_of_scope", "triage"),  # not a routing error a student can learn
            answer("i5", "e1", "facilities", "triage"),
            answer("i5", "e2", "hr_benefits", "triage"),  # a tie: ambiguous, no error
            answer("i6", "e1", "facilities", "audit"),  # the selection was triage: unanswered
        ]
    )
    assert policy_yield(selections, reviews, interactions) == {
        "audit": {"selected": 3, "answered": 2, "errors": 1, "error_share": 0.5},
        "judge_flag": {"selected": 3, "answered": 3, "errors": 1, "error_share": 0.3333},
        "uncertainty": {"selected": 1, "answered": 0, "errors": 0, "error_share": None},
    }
    assert policy_yield(selections.iloc[0:0], reviews, interactions) == {}


# --- the triage stage on a store -------------------------------------------------------------------------
EXPERTS = list(TINY_EXAMPLES)
MISROUTED = {4, 11, 23, 38, 47}  # routed elsewhere than their phrase says


def stage_records(n=70):
    """Interactions over two weeks on the tiny router's phrases: a third unhappy, a sixth without feedback,
    five planted routing errors among the unhappy ones."""
    records = []
    for i in range(n):
        expert = EXPERTS[i % len(EXPERTS)]
        text = f"{TINY_EXAMPLES[expert][i % 3]} ({i})"
        routed = EXPERTS[(i + 3) % len(EXPERTS)] if i in MISROUTED else expert
        if i in MISROUTED or i % 3 == 0:
            feedback = {"thumbs": "down", "rating": None, "comment": None}
        elif i % 6 == 1:
            feedback = None
        else:
            feedback = {"thumbs": "up", "rating": None, "comment": None}
        record = good_record(
            i,
            timestamp=f"2026-09-{7 + i % 14:02d}T{8 + i % 10:02d}:00:00Z",
            routed_expert=routed,
            feedback=feedback,
        )
        record["request"]["messages"][1]["content"] = text
        records.append(record)
    return records


def make_run(folder, store_url, review, audit_size=20, name="budget"):
    """A run whose config reads the logs in `folder/logs` (ingested into the store here), with `review`."""
    from flywheel.collect.ingest import ingest
    from flywheel.core.runs import create_run
    from flywheel.core.store import Store

    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "logs.jsonl", "w") as f:
        for record in stage_records():
            f.write(json.dumps(record) + "\n")
    config = {
        "extends": str(REPO / "configs" / "test.yaml"),
        "name": name,
        "experts": {e: e.replace("_", " ") for e in EXPERTS},
        "source": {"kind": "files", "paths": [str(logs)]},
        "store": {"url": store_url},
        "audit": {"size": audit_size},
        "review": review,
    }
    (folder / "cfg.yaml").write_text(yaml.safe_dump(config))
    ingest(Store(store_url), [logs / "logs.jsonl"], progress=False)
    return create_run(folder / "cfg.yaml", runs_root=folder / "runs")


def open_triage(run):
    from flywheel.core.context import open_stage
    from flywheel.triage.stage import Triage

    return Triage(open_stage(run.path), log=lambda _: None)


def flag_everything(triage):
    """Suggestions as the judges give them: the planted misroutes flagged as routing, the rest not."""
    queue = triage.queue["id"].tolist()
    triage.verdicts = pd.DataFrame(
        {
            "interaction_id": queue,
            "cause": ["routing" if int(i[3:]) in MISROUTED else "generation" for i in queue],
            "expert": [None] * len(queue),
            "confidence": [0.5 + (int(i[3:]) % 7) / 20 for i in queue],
            "rationale": [""] * len(queue),
            "judge": ["embedding"] * len(queue),
        }
    )


def test_without_a_budget_the_stage_sends_todays_sample_and_queue_and_records_them(tmp_path, any_store):
    from flywheel.core.audit import sample_audit
    from flywheel.triage.review import review_queue

    run = make_run(tmp_path, any_store.url, {"mode": "simulate"})
    interactions = any_store.interactions_frame()
    expected_sample = sample_audit(interactions, set(), 20, 0.3, seed=run_seed(run), cycle_id=run.cycle_id)
    triage = open_triage(run)
    triage.sample_audit()
    assert [r["interaction_id"] for r in triage.sampled] == [r["interaction_id"] for r in expected_sample]
    expected_queue = review_queue(
        interactions, any_store.reviews_frame(), exclude_ids=triage.audit["interaction_id"]
    )
    flag_everything(triage)
    spent = triage.select()
    assert triage.review_items is triage.queue  # the very frame push sent before there was a budget
    assert triage.queue["id"].tolist() == expected_queue["id"].tolist()
    assert spent["records"].to_dict() == {"audit": 20, "unsatisfied": len(expected_queue)}
    selections = any_store.review_selections_frame()
    assert len(selections) == 20 + len(expected_queue) and selections["score"].isna().all()
    assert triage.budget.budget is None and triage.budget.quotas == {}


def run_seed(run):
    from flywheel.core.config import load_config

    return load_config(run.config_path).seed


def test_a_budget_caps_the_audit_and_the_triage_without_a_promoted_router(tmp_path, any_store):
    run = make_run(tmp_path, any_store.url, {"mode": "simulate", "budget": 16}, audit_size=30)
    triage = open_triage(run)
    triage.sample_audit()
    assert len(triage.sampled) == 8  # min(audit.size 30, half of 16)
    flag_everything(triage)
    spent = triage.select()["records"].to_dict()
    assert spent == {"audit": 8, "judge_flag": 8, "uncertainty": 0}  # its 3 went to the judges' flags
    assert triage.budget.skipped == {"uncertainty": "no promoted router: the production model serves"}
    assert triage.budget.reassigned == {"uncertainty": "judge_flag"}
    assert triage.budget.quotas == {"audit": 8, "judge_flag": 5, "uncertainty": 3}
    flagged = [int(i[3:]) for i in triage.review_items["id"]]
    planted = sorted(MISROUTED - set(int(i[3:]) for i in triage.audit["interaction_id"]))
    assert flagged[: len(planted)] == sorted(planted, key=lambda i: (-(0.5 + (i % 7) / 20), f"{i:06d}"))
    selections = any_store.review_selections_frame()
    assert len(selections) == 16 and selections["interaction_id"].is_unique
    assert selections.groupby("policy")["task"].first().to_dict() == {
        "audit": "audit",
        "judge_flag": "triage",
    }
    assert set(selections["interaction_id"]) == set(triage.review_items["id"]) | set(
        triage.audit["interaction_id"]
    )
    assert run.manifest()["review_budget"]["spent"] == spent

    # a resumed stage chooses nothing new and pushes the same records
    again = open_triage(run)
    again.sample_audit()
    flag_everything(again)
    assert again.select()["records"].to_dict() == spent
    assert again.review_items["id"].tolist() == triage.review_items["id"].tolist()
    assert len(any_store.review_selections_frame()) == 16


def test_the_router_in_service_finds_its_disagreements_with_production(tmp_path, any_store):
    from flywheel.core.registry import Registry

    review = {"mode": "simulate", "budget": 12, "policies": {"audit": 0.5, "uncertainty": 0.5}}
    run = make_run(tmp_path, any_store.url, review, audit_size=30)
    Registry(any_store).promote(train_tiny_router(tmp_path / "tiny"), reason="test")
    triage = open_triage(run)
    triage.sample_audit()
    spent = triage.select()["records"].to_dict()
    assert spent == {"audit": 6, "uncertainty": 6} and triage.budget.skipped == {}
    selections = any_store.review_selections_frame().set_index("interaction_id")
    chosen = selections[selections["policy"].eq("uncertainty")].sort_values("score", ascending=False)
    audited = {int(i[3:]) for i in triage.audit["interaction_id"]}
    planted = MISROUTED - audited
    # the misroutes it has not audited are where the router doubts production most
    assert {int(i[3:]) for i in chosen.index[: len(planted)]} == planted
    assert chosen["score"].between(0, 1).all() and chosen["score"].is_monotonic_decreasing


def test_the_same_inputs_choose_the_same_records(tmp_path):
    from flywheel.core.registry import Registry
    from flywheel.core.store import Store

    chosen = []
    router = train_tiny_router(tmp_path / "tiny")
    for attempt in ("one", "two"):
        folder = tmp_path / attempt
        folder.mkdir()
        url = f"sqlite:///{folder / 'store.db'}"
        run = make_run(folder, url, {"mode": "simulate", "budget": 18}, audit_size=30)
        Registry(Store(url)).promote(router, reason="test")
        triage = open_triage(run)
        triage.sample_audit()
        flag_everything(triage)
        triage.select()
        frame = Store(url).review_selections_frame()
        assert len(frame) == 18  # the whole budget, never more
        frame = frame.assign(score=frame["score"].fillna(-1.0))  # the audit's: random, no score
        chosen.append(frame[["interaction_id", "policy", "score"]].to_numpy().tolist())
    assert chosen[0] == chosen[1]
    assert {row[1] for row in chosen[0]} == {"audit", "judge_flag", "uncertainty"}


def majority_label(answers):
    counts = answers.value_counts()
    return "ambiguous" if len(counts) > 1 and counts.iloc[0] == counts.iloc[1] else counts.index[0]


# --- through the real Argilla server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def argilla(tmp_path_factory, redis_server):
    with embedded_argilla(tmp_path_factory.mktemp("argilla-home")) as info:
        yield info


def test_only_the_chosen_records_go_to_argilla_and_the_result_says_what_each_policy_bought(argilla, tmp_path):
    from flywheel.collect.ingest import ingest
    from flywheel.core.config import load_config
    from flywheel.core.log_sources import log_source
    from flywheel.core.results import TriageResult, read_result
    from flywheel.core.runs import create_run
    from flywheel.core.store import Store

    config = {
        "extends": str(REPO / "configs" / "test.yaml"),
        "name": "budget-argilla",
        "experts": SMALL_CATALOG,
        "source": {"kind": "demo", "n_interactions": 130, "weeks": 2},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
        "audit": {"size": 40, "experts_per_record": 3},
        "review": {
            "mode": "simulate",
            "budget": 24,
            "policies": {"audit": 0.5, "judge_flag": 0.25, "unsatisfied": 0.25},
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run = create_run(tmp_path / "cfg.yaml", runs_root=tmp_path / "runs")
    files = log_source("demo").log_files(load_config(run.config_path), run)
    ingest(Store(config["store"]["url"]), files, progress=False)

    triage = open_triage(run)
    triage.sample_audit()
    triage.judge()  # the real embedding judge
    assert triage.select()["records"].to_dict() == {"audit": 12, "judge_flag": 6, "unsatisfied": 6}
    pushed = triage.push()
    assert pushed["audit"].pushed == 12 and pushed["triage"].pushed == 12  # not the whole queue
    assert len(triage.queue) > 12
    triage.answer_simulated()
    triage.pull()
    assert triage.progress == {"total": 12, "completed": 12, "pending": 0}
    assert triage.audit_progress == {"total": 12, "completed": 12, "pending": 0}
    triage.plot_causes()
    triage.score_judges()
    triage.build_ground_truth()
    triage.record()

    result = read_result(run, TriageResult)
    bought = {policy: row.model_dump() for policy, row in result.review_budget.bought.items()}
    assert set(bought) == {"audit", "judge_flag", "unsatisfied"}
    assert all(row["selected"] == row["answered"] for row in bought.values())
    assert sum(row["selected"] for row in bought.values()) == 24
    # recomputed by hand from the store: each policy's routing errors
    store = Store(config["store"]["url"])
    selections, reviews = store.review_selections_frame(), store.reviews_frame()
    logged = store.interactions_frame().set_index("id")["routed_expert"]
    for policy, row in bought.items():
        mine = selections[selections["policy"].eq(policy)]
        answers = reviews[
            reviews["interaction_id"].isin(mine["interaction_id"]) & reviews["task"].eq(mine["task"].iloc[0])
        ]
        majority = answers.groupby("interaction_id")["correct_expert"].agg(majority_label)
        wrong = [i for i, label in majority.items() if label in SMALL_CATALOG and label != logged[i]]
        assert row["errors"] == len(wrong), policy
    assert run.manifest()["review_budget"]["bought"] == bought
    print(f"\nwhat each policy bought (budget 24): {bought}")


def test_an_audit_item_reviewed_in_an_earlier_cycle_still_counts_against_the_budget():
    """The blind audit may draw an item triaged before; it is reviewed again, and the triage policies get
    only what is left of the budget (a cycle once spent 84 records of 80 this way)."""
    audit = [(f"a{i}", None) for i in range(40)]
    flagged = [(f"j{i}", 1.0) for i in range(100)]
    allocation = allocate(
        80,
        {"audit": 0.6, "judge_flag": 0.25, "uncertainty": 0.15},
        {"audit": audit, "judge_flag": flagged},
        skipped={"uncertainty": "nothing promoted"},
        exclude=["a1", "a2", "a3", "a4"],  # triaged in an earlier cycle
    )
    assert len(allocation.ids(task="audit")) == 40
    assert sum(len(picks) for picks in allocation.chosen.values()) == 80
