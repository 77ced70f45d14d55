"""The core's model stack: MiniLM embeddings through sentence-transformers (equal to the mean pooling the
workbench computed by hand before), few-shot selection on them, and the device and precision choice."""

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from flywheel.core.config import CandidateConfig
from flywheel.core.devices import bf16_supported, compute_device, inference_dtype, training_dtype
from flywheel.core.embeddings import embed, sentence_encoder
from flywheel.core.prompts import FewShotSelector
from flywheel.core.weights import build_tiny_tokenizer, resolve_model_source
from flywheel.finetune.sft import hardware_defaults

TEXTS = [
    "How do I reset my VPN password?",
    "vpn password reset please",
    "When is the next earnings call?",
    "Can I add my newborn to my health insurance?",
    "badge",
]


def mean_pooled(texts: list[str], max_length: int = 128) -> np.ndarray:
    """The workbench's former hand-written embeddings: mean of the last hidden states over the attention mask,
    L2-normalised, all texts in one batch."""
    folder = resolve_model_source("minilm-l6")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_embeddings_equal_the_hand_written_mean_pooling():
    vectors = embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, mean_pooled(TEXTS), atol=1e-6)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.75 > similarity[0, 2]  # a rephrase, and another topic


def test_embeddings_truncate_at_max_length():
    shared = "word " * 200
    texts = [shared + "laptop", shared + "dividend"]
    short = embed(texts, max_length=32)
    np.testing.assert_allclose(short[0], short[1], atol=1e-6)  # both cut before their last word
    np.testing.assert_allclose(short, mean_pooled(texts, max_length=32), atol=1e-6)
    long = embed(texts, max_length=256)
    assert not np.allclose(long[0], long[1], atol=1e-4)


def test_embeddings_of_nothing_and_the_local_folder_only():
    assert embed([]).shape == (0, 384)
    encoder = sentence_encoder(str(resolve_model_source("minilm-l6")))
    assert [type(m).__name__ for m in encoder] == ["Transformer", "Pooling", "Normalize"]
    assert encoder.device == compute_device()


def test_few_shot_selection_puts_the_most_similar_example_last_within_the_budget():
    tokenizer = build_tiny_tokenizer()
    texts = ["my vpn password expired", "quarterly earnings date", "enroll my baby in dental", "printer jam"]
    labels = ["it_help", "finance_earnings", "hr_benefits", "it_help"]
    selector = FewShotSelector(texts, labels, embed(texts), k=2, max_tokens=10_000)
    [picked] = selector.select(["reset vpn password"], tokenizer)
    assert len(picked) == 2 and picked[-1] == ("my vpn password expired", "it_help")
    tight = FewShotSelector(texts, labels, embed(texts), k=4, max_tokens=1)
    assert tight.select(["reset vpn password"], tokenizer) == [[]]  # no example fits one token


@pytest.mark.skipif(compute_device().type != "cpu", reason="the CPU's choices")
def test_cpu_stays_fp32_with_the_former_training_settings():
    assert compute_device() == torch.device("cpu")
    assert not bf16_supported()
    assert inference_dtype() == training_dtype() == torch.float32
    assert hardware_defaults(CandidateConfig(name="c", kind="causal_lm", model="tiny-llama")) == {
        "device": "cpu",
        "dtype": torch.float32,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "device_map": None,
        "pin_memory": False,
    }


@pytest.mark.skipif(compute_device().type == "cpu", reason="needs an accelerator")
def test_accelerator_uses_half_precision_on_its_own_device():
    device = compute_device()
    defaults = hardware_defaults(CandidateConfig(name="c", kind="causal_lm", model="tiny-llama"))
    assert defaults["device"] == str(device) and defaults["device_map"] == {"": device}
    assert defaults["bf16"] != defaults["fp16"] and training_dtype() in (torch.bfloat16, torch.float16)
    assert inference_dtype() in (torch.bfloat16, torch.float32)
