"""The demo world week by week (flywheel.demo.weekly) and its simulated production LLM service
(flywheel.demo.production_llm): weeks partition the generated world, users react to any router as the
generator's behaviour says (and exactly as logged to the production model), and the production service
answers the logged decisions over real HTTP to the workbench's own endpoint clients."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from pydantic import ValidationError

from flywheel.core.endpoints import EndpointChatModel
from flywheel.core.routers import EndpointRouter
from flywheel.core.schema import Interaction
from flywheel.demo.generator import PRODUCTION_MODEL, generate_demo
from flywheel.demo.production_llm import production_app
from flywheel.demo.weekly import Question, WeeklyWorld, question_key
from flywheel.demo.world import behaviour

CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"
ARGS = {"n_interactions": 300, "weeks": 4, "start": "2026-09-07", "seed": 11}


@pytest.fixture(scope="module")
def experts() -> dict[str, str]:
    return yaml.safe_load(CONFIG.read_text())["experts"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, experts: dict[str, str]) -> WeeklyWorld:
    return WeeklyWorld.create(tmp_path_factory.mktemp("weekly"), experts, **ARGS)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _good_records(world: WeeklyWorld) -> dict[str, dict]:
    """The log's well-formed records by id, first copy (as ingest keeps them)."""
    records: dict[str, dict] = {}
    for line in (world.folder / "logs.jsonl").read_text(encoding="utf-8").splitlines():
        if _parses_as_record(line):
            record = json.loads(line)
            records.setdefault(record["id"], record)
    return records


# --- the calendar and the logs --------------------------------------------------------------------------


def test_the_folder_holds_what_generate_demo_writes(world, experts, tmp_path):
    meta = generate_demo(tmp_path, experts, **ARGS)
    for name in ("logs.jsonl", "hidden_truth.jsonl", "demo_meta.json"):
        assert (world.folder / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert world.meta == meta
    assert (world.weeks, world.launch_week) == (4, 4)
    assert [world.week_start(k).isoformat() for k in (1, 2, 4)] == ["2026-09-07", "2026-09-14", "2026-09-28"]


def test_log_lines_of_all_weeks_are_the_generated_file(world):
    lines = [line for k in range(1, world.weeks + 1) for line in world.log_lines(k)]
    assert lines == (world.folder / "logs.jsonl").read_text(encoding="utf-8").splitlines()
    broken = sum(1 for line in lines if not _parses_as_record(line))
    assert broken == world.meta["counts"]["malformed"] > 0
    assert len(lines) - len(set(lines)) == world.meta["counts"]["duplicates"] > 0


def _parses_as_record(line: str) -> bool:
    """Whether a line is a record the log schema accepts (as ingest decides)."""
    try:
        Interaction.model_validate(json.loads(line))
    except (json.JSONDecodeError, ValidationError):
        return False
    return True


def test_weeks_partition_the_well_formed_interactions(world):
    truth_ids = [row["id"] for row in _read_jsonl(world.folder / "hidden_truth.jsonl")]
    weekly = [[q.id for q in world.questions(k)] for k in range(1, world.weeks + 1)]
    assert [i for week in weekly for i in week] == truth_ids  # each once, in log order, none left out
    assert [len(week) for week in weekly] == [w["interactions"] for w in world.meta["per_week"]]
    for k in range(1, world.weeks + 1):
        begins = datetime.combine(world.week_start(k), datetime.min.time(), tzinfo=UTC)
        for q in world.questions(k):
            assert q.week == k and begins <= q.timestamp < begins + timedelta(days=7), q.id
        for line in world.log_lines(k):  # every line, duplicates included, sits in its record's week
            if _parses_as_record(line):
                record = json.loads(line)
                stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
                # a duplicate copy may follow its record into the next week, never precede it
                assert begins - timedelta(days=7) <= stamp < begins + timedelta(days=7), record["id"]


def test_questions_carry_the_logged_record_and_its_truth(world):
    records = _good_records(world)
    truth = {row["id"]: row for row in _read_jsonl(world.folder / "hidden_truth.jsonl")}
    for q in world.all_questions():
        record, row = records[q.id], truth[q.id]
        assert q.request == record["request"]
        assert q.request["messages"][0]["role"] == "system" and q.request["messages"][-1]["content"] == q.text
        assert (q.user_id, q.session_id) == (record["user_id"], record["session_id"])
        assert q.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ") == record["timestamp"]
        assert (q.production_expert, q.production_feedback) == (record["routed_expert"], record["feedback"])
        assert (q.true_expert, q.template) == (row["true_expert"], row["template"])
        assert q.confuser == row["confuser"]
        assert q.production_cause == row["cause"]


def test_the_launch_week_brings_the_launch(world):
    launch = behaviour().launch
    sizes = {k: len(world.questions(k)) for k in range(1, world.weeks + 1)}
    usual = [n for k, n in sizes.items() if k != world.launch_week]
    assert sizes[world.launch_week] / (sum(usual) / len(usual)) == pytest.approx(launch.volume, abs=0.2)

    def docs_share(k: int) -> float:
        return sum(q.true_expert == "product_docs" for q in world.questions(k)) / sizes[k]

    others = [docs_share(k) for k in sizes if k != world.launch_week]
    assert docs_share(world.launch_week) > 2.5 * max(others)
    launch_templates = [q for q in world.questions(world.launch_week) if q.template.startswith("launch/")]
    assert len(launch_templates) >= 0.2 * sizes[world.launch_week]


def test_weeks_out_of_range_are_refused(world):
    for bad in (0, world.weeks + 1, -1, "2", True):
        with pytest.raises(ValueError, match="not one of this world's weeks"):
            world.log_lines(bad)
        with pytest.raises(ValueError, match="not one of this world's weeks"):
            world.questions(bad)


def test_the_folder_is_reused_when_it_matches_and_rewritten_when_not(world, experts, tmp_path):
    folder = tmp_path / "w"
    WeeklyWorld.create(folder, experts, **ARGS)
    inodes = {p.name: p.stat().st_ino for p in folder.iterdir()}
    WeeklyWorld.create(folder, experts, **ARGS)
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == inodes  # nothing written again

    good = (folder / "logs.jsonl").read_bytes()
    (folder / "logs.jsonl").write_bytes(good[: len(good) // 2])  # a damaged world is generated again
    WeeklyWorld.create(folder, experts, **ARGS)
    assert (folder / "logs.jsonl").read_bytes() == good

    other = WeeklyWorld.create(folder, experts, **{**ARGS, "n_interactions": 200})
    assert json.loads((folder / "demo_meta.json").read_text())["args"]["n_interactions"] == 200
    assert (folder / "logs.jsonl").read_text(encoding="utf-8").splitlines() == [
        line for k in range(1, other.weeks + 1) for line in other.log_lines(k)
    ]


# --- the users ------------------------------------------------------------------------------------------


def test_the_production_decision_gets_exactly_what_the_log_has(world):
    truth = {row["id"]: row for row in _read_jsonl(world.folder / "hidden_truth.jsonl")}
    for q in world.all_questions():
        reaction = world.react(q, q.production_expert)
        assert reaction.feedback == q.production_feedback
        assert (reaction.satisfied, reaction.cause) == (truth[q.id]["satisfied"], truth[q.id]["cause"])
        assert world.truth_row(q, q.production_expert) == truth[q.id]
    q = next(q for q in world.all_questions() if q.production_feedback)
    world.react(q, q.production_expert).feedback["comment"] = "changed by a caller"
    assert world.react(q, q.production_expert).feedback == q.production_feedback  # a copy each time


def test_reactions_are_deterministic_and_seeded(world, experts, tmp_path):
    again = WeeklyWorld.create(tmp_path / "again", experts, **ARGS)
    other_seed = WeeklyWorld.create(tmp_path / "other", experts, **{**ARGS, "seed": 12})
    decisions = [(q, e) for q in world.all_questions()[:80] for e in experts]
    first = [world.react(q, e) for q, e in decisions]
    assert [world.react(q, e) for q, e in decisions] == first
    assert [again.react(again.question(q.id), e) for q, e in decisions] == first
    # another seed is another world, whose users react their own way
    theirs = [other_seed.react(q, e) for q in other_seed.all_questions()[:80] for e in experts]
    assert theirs != first


def test_misroutes_leave_users_unsatisfied_at_the_configured_rate(world, experts):
    rate = behaviour().satisfaction.unsatisfied_when_misrouted
    reactions = []
    for q in world.all_questions():
        if q.true_expert is None:
            continue
        wrong = [e for e in experts if e not in (q.true_expert, q.production_expert)]
        for e in wrong[:3]:
            reactions.append((q, world.react(q, e)))
    assert len(reactions) > 600
    routing = sum(r.cause == "routing" for _, r in reactions) / len(reactions)
    assert rate - 0.05 < routing < rate + 0.05, routing  # ~0.013 standard error at this size
    for q, r in reactions:
        assert r.cause in ("routing", "none")
        assert (r.feedback is None) == (q.production_feedback is None) == (r.satisfied is None)
        if r.satisfied is not None:
            assert r.satisfied == (r.cause == "none")
            thumbs, rating = r.feedback["thumbs"], r.feedback["rating"]
            assert (thumbs is None) != (rating is None)
            assert thumbs in (None, "up" if r.satisfied else "down")
            assert rating is None or (rating >= 4) == r.satisfied


def test_the_right_expert_satisfies_most_users(world):
    """Where production misrouted, the right expert mostly pleases; what still fails is retrieval or
    generation, at about the per-expert rates."""
    right = [(q, world.react(q, q.true_expert)) for q in world.all_questions() if q.true_expert]
    assert all(r.cause in ("none", "retrieval", "generation") for _, r in right)
    unhappy = sum(r.cause != "none" for _, r in right) / len(right)
    assert 0.25 < unhappy < 0.50, unhappy
    fixed = [r for q, r in right if q.production_expert != q.true_expert]
    assert fixed and all(r.cause != "routing" for r in fixed)
    out_of_scope = [(q, world.react(q, "facilities")) for q in world.all_questions() if q.true_expert is None]
    assert out_of_scope and all(r.cause in ("none", "out_of_scope") for _, r in out_of_scope)


def test_truth_rows_follow_the_reaction(world, experts):
    q = next(q for q in world.all_questions() if q.true_expert and q.production_feedback is not None)
    wrong = next(e for e in experts if e not in (q.true_expert, q.production_expert))
    row, reaction = world.truth_row(q, wrong), world.react(q, wrong)
    assert row == {
        "id": q.id,
        "true_expert": q.true_expert,
        "cause": reaction.cause,
        "satisfied": reaction.satisfied,
        "confuser": q.confuser,
        "template": q.template,
    }


def test_foreign_questions_and_missing_decisions_are_refused(world):
    q = world.questions(1)[0]
    stranger = Question(**{**q.__dict__, "id": "ix-999999"})
    with pytest.raises(KeyError, match="not a well-formed question of this world"):
        world.react(stranger, q.production_expert)
    with pytest.raises(TypeError, match="expert name"):
        world.react(q, None)


# --- the production LLM service -----------------------------------------------------------------------


def test_production_answers_are_the_logged_decisions(world):
    by_text = Counter(question_key(q.text) for q in world.all_questions())
    for q in world.all_questions():
        answer = world.production_answer("  " + q.text.replace(" ", "\n ") + " ")  # as a prompt clips it
        if by_text[question_key(q.text)] == 1:
            assert answer == q.production_expert, q.id
        else:  # asked several times: one answer, one the world logged for that text
            logged = {p.production_expert for p in world.all_questions() if p.text == q.text}
            assert answer in logged
    assert world.production_answer("a question nobody in this world asked") is None


def test_the_production_service_answers_the_world_over_http(world, experts, serve_app):
    questions = world.all_questions()
    with serve_app(production_app(world)) as base_url:
        router = EndpointRouter("production", {"base_url": base_url, "model": PRODUCTION_MODEL}, experts)
        routed = router.predict([q.text for q in questions])
        unknown = "what is the airspeed velocity of an unladen swallow in the cafeteria"
        strays = router.predict([unknown, unknown])
        models = httpx.get(f"{base_url}/models").json()
        health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
        wrong_model = EndpointChatModel(base_url, "gpt-nonexistent", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            wrong_model.complete([{"role": "user", "content": questions[0].text}])
        bad = httpx.post(f"{base_url}/chat/completions", json={"model": PRODUCTION_MODEL, "messages": []})
        not_json = httpx.post(f"{base_url}/chat/completions", content=b"{not json")

    assert routed == [world.production_answer(q.text) for q in questions]
    agree = sum(r == q.production_expert for r, q in zip(routed, questions, strict=True)) / len(questions)
    assert agree > 0.9  # the rest are texts asked several times with different logged decisions
    assert strays[0] == strays[1] and strays[0] in experts  # unknown: deterministic, still an expert
    prompt_in, completion_out = router.mean_tokens()
    assert prompt_in > 100 and 1 < completion_out < 10  # the long routing prompt, an expert name
    assert [m["id"] for m in models["data"]] == [PRODUCTION_MODEL]
    assert (health["answered"], health["unknown"]) == (len(questions) + 2, 2)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "messages"
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_request"


def test_the_production_service_needs_its_key_when_it_has_one(world, serve_app, monkeypatch):
    monkeypatch.setenv("DEMO_PRODUCTION_KEY", "s3cret")
    q = world.questions(2)[0]
    with serve_app(production_app(world, api_key="s3cret")) as base_url:
        client = EndpointChatModel(base_url, PRODUCTION_MODEL, api_key_env="DEMO_PRODUCTION_KEY")
        answer = client.complete(q.request["messages"])  # the logged request itself, its system prompt too
        body = {"model": PRODUCTION_MODEL, "messages": q.request["messages"]}
        anonymous = httpx.post(f"{base_url}/chat/completions", json=body)
    assert answer == world.production_answer(q.text)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"


def test_the_router_service_routes_through_the_simulated_production_llm(world, experts, serve_app, tmp_path):
    """`flywheel serve` with no promotion and a production endpoint: the world's production decisions come
    back through the service, which logs each with the production model's name."""
    from flywheel.core.config import EndpointConfig
    from flywheel.core.registry import Registry
    from flywheel.core.store import Store
    from flywheel.serve.app import create_app
    from flywheel.serve.routing import RouterProvider

    questions = world.questions(3)[:15]
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    with serve_app(production_app(world)) as production_url:
        endpoint = EndpointConfig(base_url=production_url, model=PRODUCTION_MODEL, timeout_s=30)
        provider = RouterProvider(Registry(store), production_endpoint=endpoint, experts=experts)
        with serve_app(create_app(store, provider)) as base_url:
            client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
            answers = [
                client.chat.completions.create(model="router", messages=[{"role": "user", "content": q.text}])
                for q in questions
            ]
    expected = [world.production_answer(q.text) for q in questions]
    assert [a.choices[0].message.content for a in answers] == expected
    assert {a.model for a in answers} == {PRODUCTION_MODEL}
    assert len(store.interactions_frame(["query"])) == len(questions)
