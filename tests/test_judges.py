"""Judges (triage): the embedding judge, the LLM judge's parsing/retries over a real HTTP endpoint and a tiny
local model, and the scoring of judges against experts' answers."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from flywheel.core.config import JudgesConfig, load_config
from flywheel.triage.judge_scoring import (
    describe,
    reference_from_reviews,
    reference_from_truth,
    score_cycle,
    score_judge,
    wilson,
)
from flywheel.triage.judges import (
    SUGGESTION_COLUMNS,
    VERDICT_COLUMNS,
    Embedder,
    EmbeddingJudge,
    EndpointChatModel,
    LLMJudge,
    LocalChatModel,
    VerdictError,
    judge_suggestions,
    parse_verdict,
    run_judges,
    save_verdicts,
    verdict_frame,
)

EXPERTS = {
    "it_help": "Laptops, accounts, passwords, VPN, email and software installs.",
    "payroll_equity": "Salary, pay slips, tax forms, bonuses and stock grants.",
    "facilities": "Offices, desks, badges, parking and meeting rooms.",
}
ROUTING_VERDICT = {"cause": "routing", "expert": "it_help", "confidence": 0.9, "rationale": "VPN is IT"}


def item_frame(rows: list[dict]) -> pd.DataFrame:
    base = {"answer_excerpt": "", "comment": None, "satisfied": False}
    return pd.DataFrame([{**base, **row} for row in rows])


# --- embedding judge -------------------------------------------------------------------------------------

SATISFIED = {
    "it_help": [
        "my VPN keeps disconnecting from home",
        "how do I reset my password",
        "laptop won't boot after the update",
        "can't log in to my email account",
        "how do I install Python on my work laptop",
        "VPN client says certificate expired",
    ],
    "payroll_equity": [
        "when is the next pay slip available",
        "where can I download my W-2 tax form",
        "my salary was wrong this month",
        "when do my stock grants vest",
        "how is the annual bonus paid",
        "how do I change my direct deposit bank account for salary",
    ],
    "facilities": [
        "my badge stopped working at the door",
        "how do I book a meeting room",
        "where can I park my car at the office",
        "can I get a standing desk",
        "the kitchen on floor 3 has no water",
        "how do I reserve a parking spot for a visitor",
    ],
}


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return Embedder("minilm-l6", batch_size=16, cache_dir=tmp_path_factory.mktemp("emb-cache"))


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    rows = [
        {"id": f"ok-{e}-{i}", "query_masked": q, "routed_expert": e, "satisfied": True}
        for e, questions in SATISFIED.items()
        for i, q in enumerate(questions)
    ]
    return item_frame(rows)


UNSATISFIED = item_frame(
    [
        # planted misroute: a VPN question sent to facilities
        {
            "id": "bad-route",
            "query_masked": "VPN drops every few minutes when working from home",
            "routed_expert": "facilities",
            "answer_excerpt": "Facilities can help with badges, desks and parking.",
        },
        # correctly routed, but nothing found: retrieval
        {
            "id": "ok-retrieval",
            "query_masked": "I forgot my password and cannot log in",
            "routed_expert": "it_help",
            "answer_excerpt": "I could not find any document about that in the IT knowledge base.",
        },
        # correctly routed, a wrong answer: generation
        {
            "id": "ok-generation",
            "query_masked": "when will my stock grant vest",
            "routed_expert": "payroll_equity",
            "answer_excerpt": "Your grant vests tax free on the 1st of every month.",
            "comment": "made up a number",
        },
        {
            "id": "ok-generation-2",
            "query_masked": "where do I park at the office",
            "routed_expert": "facilities",
            "answer_excerpt": "Parking is available on every floor, 24/7.",
        },
    ]
)


def test_embedding_judge_flags_the_planted_misroute_only(embedder, reference):
    judge = EmbeddingJudge.from_interactions(
        pd.concat([reference, UNSATISFIED]), list(EXPERTS), embedder=embedder, k=5
    )
    verdicts = judge.judge(UNSATISFIED).set_index("interaction_id")
    assert list(verdicts.reset_index().columns) == VERDICT_COLUMNS
    assert verdicts.loc["bad-route", "cause"] == "routing"
    assert verdicts.loc["bad-route", "expert"] == "it_help"
    assert 0.5 <= verdicts.loc["bad-route", "confidence"] <= 1
    others = verdicts.drop(index="bad-route")
    assert not others["cause"].eq("routing").any(), others[["cause", "expert", "rationale"]]
    assert (others["expert"] == UNSATISFIED.set_index("id").loc[others.index, "routed_expert"]).all()
    assert verdicts.loc["ok-retrieval", "cause"] == "retrieval"
    assert verdicts.loc["ok-generation", "cause"] == "generation"
    assert verdicts["confidence"].between(0, 1).all()
    assert verdicts["parsed"].all()


def test_embedding_judge_out_of_scope_when_far_from_every_expert(embedder, reference):
    judge = EmbeddingJudge.from_interactions(reference, list(EXPERTS), embedder=embedder, k=5)
    oos = item_frame(
        [{"id": "oos", "query_masked": "who won the football match", "routed_expert": "it_help"}]
    )
    strict = EmbeddingJudge(reference, list(EXPERTS), embedder=embedder, k=5, out_of_scope_similarity=0.99)
    loose = EmbeddingJudge(reference, list(EXPERTS), embedder=embedder, k=5, out_of_scope_similarity=-1.0)
    _, nearest = judge.votes(oos)
    assert nearest[0] < 0.45  # far from all the work questions
    assert strict.judge(oos)["cause"].item() == "out_of_scope"
    assert strict.judge(oos)["expert"].isna().item()
    assert loose.judge(oos)["cause"].item() != "out_of_scope"


def test_out_of_scope_cut_defaults_to_a_quantile_of_satisfactory_neighbour_similarities(embedder, reference):
    vectors = embedder.encode(reference["query_masked"].tolist())
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest_other = sims.max(axis=1)
    lowest = EmbeddingJudge(reference, list(EXPERTS), embedder=embedder, k=5, out_of_scope_quantile=0.0)
    assert lowest.out_of_scope_similarity == pytest.approx(nearest_other.min(), abs=1e-5)
    median = EmbeddingJudge(reference, list(EXPERTS), embedder=embedder, k=5, out_of_scope_quantile=0.5)
    assert median.out_of_scope_similarity == pytest.approx(np.median(nearest_other), abs=1e-5)
    fixed = EmbeddingJudge(reference, list(EXPERTS), embedder=embedder, out_of_scope_similarity=0.123)
    assert fixed.out_of_scope_similarity == 0.123


def test_embeddings_are_cached_on_disk(embedder, tmp_path, monkeypatch):
    import flywheel.core.embeddings

    texts = ["badge not working", "pay slip missing"]
    first = Embedder("minilm-l6", cache_dir=tmp_path)
    vectors = first.encode(texts)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although every text was cached")

    monkeypatch.setattr(flywheel.core.embeddings, "embed", no_encoder)
    again = Embedder("minilm-l6", cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(texts), vectors, atol=1e-6)


def test_run_judges_from_config_and_suggestions(embedder, reference, tmp_path):
    config = load_config(
        "configs/test.yaml", {"judges": {"run": ["embedding"], "embedding": {"k": 5, "batch_size": 8}}}
    )
    interactions = pd.concat([reference, UNSATISFIED], ignore_index=True)
    result = run_judges(config.model_copy(update={"experts": EXPERTS}), interactions, UNSATISFIED, tmp_path)
    assert result.stats["embedding"]["judged"] == len(UNSATISFIED)
    assert result.stats["embedding"]["flagged_routing"] == 1
    path = save_verdicts(result.verdicts, tmp_path / "judge_verdicts.parquet")
    assert pd.read_parquet(path)["interaction_id"].tolist() == UNSATISFIED["id"].tolist()

    llm_rows = verdict_frame(
        [
            {"interaction_id": "bad-route", "judge": "llm", "cause": "routing", "expert": "payroll_equity",
             "confidence": 0.7, "rationale": "r", "parsed": True},
            {"interaction_id": "ok-retrieval", "judge": "llm", "cause": None, "expert": None,
             "confidence": math.nan, "rationale": "unparsed", "parsed": False},
        ]
    )  # fmt: skip
    suggestions = judge_suggestions(pd.concat([result.verdicts, llm_rows], ignore_index=True))
    assert list(suggestions.columns) == SUGGESTION_COLUMNS
    assert suggestions["interaction_id"].is_unique and len(suggestions) == len(UNSATISFIED)
    by_id = suggestions.set_index("interaction_id")
    assert by_id.loc["bad-route", "judge"] == "llm"  # preferred when parsed
    assert by_id.loc["ok-retrieval", "judge"] == "embedding"  # an unparsed verdict is never a suggestion


# --- LLM verdict parsing ---------------------------------------------------------------------------------


def test_parse_verdict_bare_prose_and_fenced():
    bare = json.dumps(ROUTING_VERDICT)
    assert parse_verdict(bare, list(EXPERTS), "facilities") == ROUTING_VERDICT
    prose = f"Sure! Here is my verdict: {bare} Hope that helps."
    assert parse_verdict(prose, list(EXPERTS), "facilities") == ROUTING_VERDICT
    fenced = f"Analysis... the user asked about a VPN.\n```json\n{json.dumps(ROUTING_VERDICT, indent=2)}\n```"
    assert parse_verdict(fenced, list(EXPERTS), "facilities") == ROUTING_VERDICT
    # a braces-in-string rationale and an alias cause; out of scope has no expert
    oos = '{"cause": "Out of scope", "expert": "it_help", "confidence": 1, "rationale": "a {weird} one"}'
    assert parse_verdict(oos, list(EXPERTS), "it_help") == {
        "cause": "out_of_scope",
        "expert": None,
        "confidence": 1.0,
        "rationale": "a {weird} one",
    }
    # a retrieval verdict without an expert keeps the routed one (the routing was right)
    retrieval = '{"cause": "retrieval", "expert": null, "confidence": "0.4", "rationale": "no docs"}'
    assert parse_verdict(retrieval, list(EXPERTS), "facilities")["expert"] == "facilities"


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I think it was a routing problem, it should go to IT.",
        '{"cause": "routing", "expert": "it_help", "confidence": 0.9',  # truncated
        '{"cause": "bad luck", "expert": "it_help", "confidence": 0.9, "rationale": ""}',
        '{"cause": "routing", "expert": "legal", "confidence": 0.9, "rationale": ""}',
        '{"cause": "routing", "expert": "facilities", "confidence": 0.9, "rationale": ""}',  # = routed
        '{"cause": "routing", "expert": null, "confidence": 0.9, "rationale": ""}',
        '{"cause": "generation", "expert": "it_help", "confidence": 90, "rationale": ""}',
        '{"cause": "generation", "expert": "it_help", "confidence": "high", "rationale": ""}',
        '["routing", "it_help"]',
    ],
)
def test_parse_verdict_rejects_malformed(reply):
    with pytest.raises(VerdictError):
        parse_verdict(reply, list(EXPERTS), "facilities")


class ScriptedModel:
    """A chat model (not a transport) that replies from a script, recording what it was asked."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls: list[list[dict]] = []

    def complete(self, messages, attempt=0):
        self.calls.append(messages)
        return self.replies.pop(0)


ITEMS = item_frame(
    [
        {"id": "a", "query_masked": "vpn is down", "routed_expert": "facilities", "comment": "wrong team"},
        {"id": "b", "query_masked": "pay slip?", "routed_expert": "payroll_equity"},
    ]
)


def test_llm_judge_retries_malformed_then_counts_unparsed():
    model = ScriptedModel(
        [
            *["no idea", json.dumps(ROUTING_VERDICT)],  # a: malformed, then valid on the retry
            *["junk", "{still junk", "```json\n{}\n```"],  # b: three malformed replies
        ]
    )
    judge = LLMJudge(model, EXPERTS, max_retries=2, progress=False)
    verdicts = judge.judge(ITEMS).set_index("interaction_id")
    assert verdicts.loc["a", "parsed"] and verdicts.loc["a", "cause"] == "routing"
    assert verdicts.loc["a", "expert"] == "it_help"
    assert not verdicts.loc["b", "parsed"]
    assert pd.isna(verdicts.loc["b", "cause"]) and pd.isna(verdicts.loc["b", "expert"])
    assert math.isnan(verdicts.loc["b", "confidence"])
    assert "unparsed after 3 attempts" in verdicts.loc["b", "rationale"]
    assert (judge.stats.judged, judge.stats.parsed, judge.stats.unparsed, judge.stats.retries) == (2, 1, 1, 3)
    assert model.replies == []
    # the retry shows the model its bad reply and the problem
    retry = model.calls[1]
    assert retry[-2] == {"role": "assistant", "content": "no idea"}
    assert "no JSON object" in retry[-1]["content"]
    # the prompt carries the question, routed expert, catalog, answer excerpt and comment
    prompt = model.calls[0][1]["content"]
    for part in ("vpn is down", "Routed to: facilities", "it_help: Laptops", "User comment: wrong team"):
        assert part in prompt


# --- the endpoint path, over real HTTP -------------------------------------------------------------------


class ScriptedChatServer:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (http.server in a thread) whose
    /v1/chat/completions answers from a script: a reply string, or an int HTTP status to fail with."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                step = outer.script.pop(0) if outer.script else 500
                if isinstance(step, int):
                    payload, status = {"error": {"message": "scripted failure"}}, step
                else:
                    status = 200
                    payload = {
                        "id": f"chatcmpl-{len(outer.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": step},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_server():
    servers = []

    def start(script):
        servers.append(ScriptedChatServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_llm_judge_over_a_real_openai_compatible_endpoint(chat_server, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-test-123")
    server = chat_server(
        [
            503,  # a transient failure: retried by the client, not a verdict attempt
            f"Verdict:\n```json\n{json.dumps(ROUTING_VERDICT)}\n```",  # a: fenced JSON in prose
            "I am not sure.",  # b: malformed ...
            "still no JSON",
            '{"cause": "generation", "expert": null, "confidence": 0.3, "rationale": "vague"}',  # ... then ok
        ]
    )
    model = EndpointChatModel(server.base_url, "judge-model", api_key_env="JUDGE_TEST_KEY", timeout_s=10)
    judge = LLMJudge(model, EXPERTS, max_retries=2, progress=False)
    verdicts = judge.judge(ITEMS).set_index("interaction_id")
    model.close()
    assert verdicts.loc["a", "cause"] == "routing" and verdicts.loc["a", "expert"] == "it_help"
    assert verdicts.loc["b", "cause"] == "generation" and verdicts.loc["b", "expert"] == "payroll_equity"
    assert verdicts["parsed"].all() and judge.stats.unparsed == 0 and judge.stats.retries == 2
    assert len(server.requests) == 5
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["auth"] == "Bearer sk-test-123"
    assert first["model"] == "judge-model"
    assert "vpn is down" in first["messages"][1]["content"]
    assert server.requests[1]["temperature"] == 0.0 and server.requests[3]["temperature"] > 0


def test_endpoint_malformed_replies_are_counted_unparsed(chat_server):
    server = chat_server(["nope"] * 4)
    judge = LLMJudge(EndpointChatModel(server.base_url, "m", timeout_s=10), EXPERTS, max_retries=1)
    verdicts = judge.judge(ITEMS)
    assert judge.stats.unparsed == 2 and not verdicts["parsed"].any()
    assert verdicts["cause"].isna().all()  # nothing guessed
    assert server.requests[0]["auth"] is None  # no key configured, none sent


def test_llm_judge_against_the_real_router_service(router_service):
    """The project's own OpenAI-compatible service (`flywheel serve`, real uvicorn over a socket) answers
    with an expert's name, not a verdict: every item is retried over HTTP, then counted unparsed."""
    from flywheel.core.store import interactions

    logged_before = router_service.store.count(interactions)
    judge = LLMJudge(EndpointChatModel(router_service, "router", timeout_s=30), EXPERTS, max_retries=1)
    verdicts = judge.judge(ITEMS)
    assert (judge.stats.judged, judge.stats.unparsed, judge.stats.retries) == (2, 2, 2)
    assert not verdicts["parsed"].any() and verdicts["cause"].isna().all()
    assert judge.stats.problems == {"no JSON object": 4}
    assert router_service.store.count(interactions) - logged_before == 4  # each attempt reached the service


def test_run_judges_llm_from_config(chat_server, monkeypatch):
    monkeypatch.setenv("JUDGE_CFG_KEY", "k-1")
    server = chat_server(["junk", "junk"])
    endpoint = {"base_url": server.base_url, "model": "m", "api_key_env": "JUDGE_CFG_KEY"}
    overrides = {"judges": {"run": ["llm"], "llm": {"endpoint": endpoint, "max_retries": 1, "max_items": 1}}}
    config = load_config("configs/test.yaml", overrides)
    result = run_judges(config.model_copy(update={"experts": EXPERTS}), ITEMS, ITEMS, progress=False)
    assert len(result.verdicts) == 1  # max_items
    assert result.stats["llm"] == {
        "judged": 1,
        "flagged_routing": 0,
        "causes": {},
        "unparsed": 1,
        "retries": 1,
        "problems": {"no JSON object": 2},
    }
    assert [r["auth"] for r in server.requests] == ["Bearer k-1", "Bearer k-1"]


def test_endpoint_needs_its_key_in_the_environment(monkeypatch):
    monkeypatch.delenv("JUDGE_MISSING_KEY", raising=False)
    with pytest.raises(RuntimeError, match="JUDGE_MISSING_KEY"):
        EndpointChatModel("http://127.0.0.1:9/v1", "m", api_key_env="JUDGE_MISSING_KEY")


def test_endpoint_persistent_server_errors_raise(chat_server):
    import openai

    server = chat_server([500, 500])
    model = EndpointChatModel(server.base_url, "m", timeout_s=10, max_retries=1)  # two attempts in all
    with pytest.raises(openai.InternalServerError):
        LLMJudge(model, EXPERTS, progress=False).judge(ITEMS.head(1))
    assert len(server.requests) == 2


# --- the local-model path, with a tiny Llama --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A tiny randomly initialised Llama with a byte-level BPE tokenizer trained here, in seconds."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from flywheel.triage.judges import SYSTEM_PROMPT

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [SYSTEM_PROMPT, json.dumps(EXPERTS), json.dumps(ROUTING_VERDICT), "Question: Routed to: Answer"]
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_local_tiny_model_junk_is_retried_then_unparsed(tiny_llama):
    judge = LLMJudge(
        LocalChatModel(str(tiny_llama), max_new_tokens=24), EXPERTS, max_retries=1, progress=False
    )
    verdicts = judge.judge(ITEMS)
    assert not verdicts["parsed"].any()
    assert (judge.stats.unparsed, judge.stats.retries) == (2, 2)
    assert verdicts["rationale"].str.startswith("unparsed after 2 attempts").all()


def test_local_tiny_model_that_learnt_a_verdict_is_parsed(tiny_llama, tmp_path):
    """Overfit the tiny model on one prompt → verdict pair: the local path then yields a parsed verdict."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flywheel.triage.judges import verdict_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    row = next(ITEMS.head(1).itertuples(index=False))
    prompt = tokenizer.apply_chat_template(
        verdict_messages(row, EXPERTS), tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(json.dumps(ROUTING_VERDICT) + "</s>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + target_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.01:
            break
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    judge = LLMJudge(LocalChatModel(str(tmp_path), max_new_tokens=48), EXPERTS, max_retries=0, progress=False)
    verdict = judge.judge(ITEMS.head(1)).iloc[0]
    assert verdict["parsed"], verdict["rationale"]
    assert (verdict["cause"], verdict["expert"], verdict["confidence"]) == ("routing", "it_help", 0.9)


# --- config ----------------------------------------------------------------------------------------------


def test_judges_config_validation():
    assert JudgesConfig().run == ["embedding"]
    with pytest.raises(ValueError, match="llm is not configured"):
        JudgesConfig(run=["embedding", "llm"])
    with pytest.raises(ValueError, match="exactly one"):
        JudgesConfig.model_validate(
            {"llm": {"local_model": "x", "endpoint": {"base_url": "http://h/v1", "model": "m"}}}
        )
    with pytest.raises(ValueError):
        JudgesConfig.model_validate({"embedding": {"knn": 5}})  # extra=forbid
    ok = JudgesConfig.model_validate(
        {"run": ["llm"], "llm": {"endpoint": {"base_url": "http://h/v1", "model": "m", "api_key_env": "K"}}}
    )
    assert ok.llm.endpoint.api_key_env == "K" and ok.llm.max_retries == 2
    for name in ("demo", "test"):
        assert load_config(f"configs/{name}.yaml").judges.run == ["embedding"]


# --- scoring ---------------------------------------------------------------------------------------------

INTERACTIONS = pd.DataFrame(
    {
        "id": ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8"],
        "routed_expert": ["facilities", "it_help", "it_help", "payroll_equity", "it_help", "facilities",
                          "it_help", "it_help"],
    }
)  # fmt: skip


def review(interaction_id, expert, cause, reviewer="r1"):
    return {"interaction_id": interaction_id, "reviewer": reviewer, "correct_expert": expert, "cause": cause}


REVIEWS = pd.DataFrame(
    [
        review("i1", "it_help", "routing"),  # routing error → it_help
        review("i2", "facilities", "routing"),  # routing error → facilities
        review("i3", "payroll_equity", "routing"),  # routing error → payroll
        review("i4", "payroll_equity", "generation"),  # routed right
        review("i5", "it_help", "retrieval"),  # routed right
        review("i6", "out_of_scope", "out_of_scope"),  # out of scope: not a routing error
        # i7: a tie between two experts → ambiguous, excluded
        review("i7", "it_help", "generation", "r1"),
        review("i7", "facilities", "routing", "r2"),
        # i8: majority of three says routing error → payroll_equity
        review("i8", "payroll_equity", "routing", "r1"),
        review("i8", "payroll_equity", "routing", "r2"),
        review("i8", "it_help", "generation", "r3"),
    ]
)


def verdict(interaction_id, cause, expert, parsed=True):
    return {"interaction_id": interaction_id, "judge": "j", "cause": cause, "expert": expert,
            "confidence": 0.5 if parsed else math.nan, "rationale": "", "parsed": parsed}  # fmt: skip


VERDICTS = verdict_frame(
    [
        verdict("i1", "routing", "it_help"),  # TP, right expert
        verdict("i2", "routing", "payroll_equity"),  # TP, wrong expert
        verdict("i3", None, None, parsed=False),  # unparsed on a routing error: a miss
        verdict("i4", "routing", "it_help"),  # FP
        verdict("i5", "retrieval", "it_help"),  # TN
        verdict("i6", "routing", "it_help"),  # FP (out of scope)
        verdict("i7", "routing", "facilities"),  # ambiguous: not scored
        verdict("i8", "generation", "it_help"),  # miss
    ]
)


def wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_reference_from_reviews_majority_and_routing_errors():
    ref = reference_from_reviews(REVIEWS, INTERACTIONS).set_index("interaction_id")
    assert "i7" not in ref.index  # tie → ambiguous → excluded
    assert ref["routing_error"].to_dict() == {
        "i1": True, "i2": True, "i3": True, "i4": False, "i5": False, "i6": False, "i8": True
    }  # fmt: skip
    assert ref.loc["i8", "label"] == "payroll_equity" and ref.loc["i8", "cause"] == "routing"


def test_score_judge_hand_computed():
    score = score_judge(VERDICTS, reference_from_reviews(REVIEWS, INTERACTIONS))
    assert (score["scored"], score["unparsed"]) == (7, 1)
    assert (score["flagged"], score["confirmed"], score["flagged_and_confirmed"]) == (4, 4, 2)
    assert score["precision"]["value"] == pytest.approx(2 / 4)
    assert score["recall"]["value"] == pytest.approx(2 / 4)
    assert score["suggested_expert_accuracy"]["value"] == pytest.approx(1 / 2)
    low, high = wilson_by_hand(2, 4)
    assert (score["precision"]["ci_low"], score["precision"]["ci_high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    # cause agreement over parsed verdicts with a majority cause: i1 i2 i5 i6? i4 i8
    # i1 routing=routing ✓, i2 ✓, i4 routing≠generation, i5 ✓, i6 routing≠out_of_scope, i8 generation≠routing
    assert score["cause_agreement"]["successes"] == 3 and score["cause_agreement"]["total"] == 6
    line = describe(score)
    assert "flagged 4 of 7" in line and "2 confirmed" in line and "1 unparsed" in line


def test_wilson_edge_cases():
    assert wilson(0, 0)["value"] is None
    full = wilson(5, 5)
    assert full["value"] == 1.0 and full["ci_high"] == pytest.approx(1.0) and full["ci_low"] < 1.0
    low, high = wilson_by_hand(1, 3)
    assert (wilson(1, 3)["ci_low"], wilson(1, 3)["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_reference_from_hidden_truth(tmp_path):
    truth = tmp_path / "hidden_truth.jsonl"
    rows = [
        {"id": "i1", "true_expert": "it_help", "cause": "routing", "satisfied": False},
        {"id": "i4", "true_expert": "payroll_equity", "cause": "generation", "satisfied": False},
        {"id": "i6", "true_expert": None, "cause": "out_of_scope", "satisfied": False},
        {"id": "zz", "true_expert": "it_help", "cause": "none", "satisfied": True},  # not in the store
    ]
    truth.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ref = reference_from_truth(truth, INTERACTIONS).set_index("interaction_id")
    assert list(ref.index) == ["i1", "i4", "i6"]
    assert ref["routing_error"].tolist() == [True, False, False]
    assert ref.loc["i6", "label"] == "out_of_scope"
    score = score_judge(VERDICTS, ref.reset_index(), "hidden_truth (demo only)")
    assert (score["flagged"], score["confirmed"], score["flagged_and_confirmed"]) == (3, 1, 1)
    assert score["reference"] == "hidden_truth (demo only)"
    both = score_cycle(VERDICTS, REVIEWS, INTERACTIONS, truth)
    assert [s["reference"] for s in both] == ["experts", "hidden_truth (demo only)"]
    assert both[1] == score and both[0]["flagged"] == 4
    assert len(score_cycle(VERDICTS, REVIEWS, INTERACTIONS, tmp_path / "absent.jsonl")) == 1
