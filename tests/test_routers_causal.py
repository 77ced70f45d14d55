"""Causal-LM routers: label scoring (cached system prefix, one batched pass for all experts) against a naive
per-expert computation, decisive-token scoring and cached generation against their plain forms, agreement of
scoring and greedy generation, LoRA adapters that save and reload to the
same predictions, prompt tuning, parsing, and the eval stage's use of them."""

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel
from test_finetune_causal import CATALOG, split_task, tiny

from flywheel.core.config import load_config
from flywheel.core.inference import CausalLMRouter, decisive_lengths
from flywheel.core.prompts import RoutingPrompt, parse_expert
from flywheel.core.routers import load_router, read_candidate_card
from flywheel.core.weights import load_causal_lm
from flywheel.evaluate.stage import evaluate_all
from flywheel.finetune.train import train_candidate


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_TORCH_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_full(tmp_path_factory):
    folder = tmp_path_factory.mktemp("routers") / "full"
    train, _ = split_task()
    train_candidate(tiny(), train, CATALOG, folder, seed=0)
    return folder


def naive_scores(router, texts):
    """Each expert scored by its own full forward pass over prompt + label + EOS."""
    out = np.zeros((len(texts), len(router.prompt.names)))
    for b, prompt in enumerate(router.prompts(texts)):
        prompt_ids = router.tokenizer(prompt, add_special_tokens=False).input_ids
        for e, name in enumerate(router.prompt.names):
            tok = router.tokenizer
            label = [*tok(name, add_special_tokens=False).input_ids, tok.eos_token_id]
            with torch.no_grad():
                logits = router.model(torch.tensor([prompt_ids + label])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            out[b, e] = sum(logp[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(label))
    return out


def test_shared_prefix_scoring_equals_naive_scoring(tiny_full):
    router = load_router(tiny_full)
    router.label_scoring = "full"
    assert len(router._prefix_ids) > 5  # the system turn is cached
    texts = ["reset my vpn password?", "a much longer question about how much parental leave I get", "desk"]
    np.testing.assert_allclose(router.score(texts), naive_scores(router, texts), atol=1e-4)


def plain_router(router) -> CausalLMRouter:
    """The same model without the cached system prefix, scoring every label token."""
    return CausalLMRouter(
        "plain",
        router.model,
        router.tokenizer,
        router.prompt,
        label_scoring="full",
        cache_system_prefix=False,
    )


def test_decisive_scoring_and_cached_generation_match_their_plain_forms(tiny_full):
    _, test = split_task()
    texts = test["text"].tolist()
    router = load_router(tiny_full)
    plain = plain_router(router)
    decisive, full = router.predict(texts), plain.predict(texts)
    assert np.mean([a == b for a, b in zip(decisive, full, strict=True)]) >= 0.95
    router.decision = plain.decision = "generate"
    assert router.generate(texts[:16]) == plain.generate(texts[:16])  # greedy: the cache changes nothing


def test_decisive_lengths():
    assert decisive_lengths([[5, 1, 9], [5, 2, 9], [7, 9], [7, 9, 3]]) == [2, 2, 2, 3]
    assert decisive_lengths([[1, 2], [3, 4]]) == [1, 1]  # first tokens differ: one forward pass decides
    assert decisive_lengths([[1, 2], [1, 2]]) == [2, 2]  # never told apart: every token counts


def test_scoring_and_generation_agree(tiny_full):
    _, test = split_task()
    router = load_router(tiny_full)
    texts = test["text"].tolist()
    scored = router.predict(texts)
    router.decision = "generate"
    generated = router.predict(texts)
    agreement = np.mean([a == b for a, b in zip(scored, generated, strict=True)])
    assert agreement >= 0.95, list(zip(scored, generated, strict=True))
    assert (pd.Series(generated) == test["label"]).mean() >= 0.9


def test_lora_adapter_saves_reloads_and_predicts_identically(tiny_full, tmp_path):
    train, test = split_task()
    # LoRA on top of the fine-tuned tiny model (a local folder as the model source), labels flipped so the
    # adapter must change the decisions.
    flipped = train.assign(
        label=train["label"].map({"it_help": "facilities", "facilities": "it_help"}).fillna(train["label"])
    )
    lora = tiny("lora", model=str(tiny_full / "model"), method="lora", r=8, max_steps=60, learning_rate=1e-2)
    record = train_candidate(lora, flipped, CATALOG, tmp_path / "lora", seed=0)
    assert 0 < record["trainable_parameters"] < record["parameters"]
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()

    texts = test["text"].tolist()
    first, again = load_router(tmp_path / "lora"), load_router(tmp_path / "lora")
    assert first.predict(texts) == again.predict(texts)
    # The merged router (as loaded for evaluation) against the unmerged PeftModel straight from disk.
    base, tokenizer = load_causal_lm(str(tiny_full / "model"))
    unmerged = CausalLMRouter(
        "u", PeftModel.from_pretrained(base, tmp_path / "lora" / "adapter"), tokenizer, RoutingPrompt(CATALOG)
    )
    np.testing.assert_allclose(first.score(texts), unmerged.score(texts), atol=1e-4)
    assert first.predict(texts) == unmerged.predict(texts)
    before = load_router(tiny_full).predict(texts)
    assert first.predict(texts) != before  # the adapter did change decisions


def test_prompt_tuning_trains_saves_and_routes(tiny_full, tmp_path):
    train, test = split_task()
    candidate = tiny(
        "pt",
        model=str(tiny_full / "model"),
        method="prompt_tuning",
        num_virtual_tokens=4,
        max_steps=10,
        learning_rate=1e-2,
    )
    record = train_candidate(candidate, train, CATALOG, tmp_path / "pt", seed=0)
    assert record["trainable_parameters"] == 4 * 64
    router = load_router(tmp_path / "pt")
    assert router.soft_prompt is not None and read_candidate_card(tmp_path / "pt")["weights"] == "adapter"
    texts = test["text"].tolist()[:6]
    assert all(p in CATALOG for p in router.predict(texts))
    router.decision = "generate"
    assert len(router.generate(texts)) == len(texts)


def test_parse_expert():
    names = list(CATALOG)
    assert parse_expert(" it_help\n", names) == "it_help"
    assert parse_expert("`facilities`.", names) == "facilities"
    assert parse_expert("I would send this to hr_benefits.", names) == "hr_benefits"
    assert parse_expert("it_help or facilities", names) is None
    assert parse_expert("hr_help", names) is None
    assert parse_expert("", names) is None


def test_routing_prompt_is_short_and_names_every_expert():
    experts = load_config("configs/demo.yaml").experts
    short, long = RoutingPrompt(experts), RoutingPrompt(experts, style="long")
    assert all(name in short.system() for name in experts)
    assert len(short.system()) < 250 < len(long.system())
    minimal = RoutingPrompt(experts, style="minimal")
    assert not any(name in minimal.system() for name in experts) and len(minimal.system()) < 60
    messages = short.messages("vpn down", [("laptop broken", "it_help")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


def test_eval_scores_causal_candidates(tiny_full, tmp_path):
    """evaluate_all loads the causal candidate through load_router and times it like any other."""
    config = load_config("configs/test.yaml").model_copy(update={"experts": CATALOG})
    _, test = split_task()
    test = test.assign(id=[f"ix-{i}" for i in range(len(test))], routed_expert=test["label"])
    logs = test.assign(model="big", latency_ms=900.0, tokens_in=200, tokens_out=3)
    evaluation = evaluate_all(config, test, logs, {"tiny": tiny_full})
    row = evaluation.rows[1]
    assert row["name"] == "tiny" and row["accuracy"] >= 0.9 and row["p50_ms"] > 0
    assert 0 < row["ttft_p50_ms"] < 10 * row["p95_ms"]  # a forward pass: of the order of a decision
