"""PyTorch side of bench/llm-train.bench.ts: transformers LlamaForCausalLM loaded from the same GGUF (dequantized to
float32 by transformers' GGUF loader), SDPA attention, eager, the same thread count; LoRA through PEFT (r 8, alpha 16,
no dropout, every projection) or full fine-tuning; AdamW (weight decay 0.01), clip_grad_norm_ 1, lr 1e-4, as the
tempered side. Step time = forward + backward + clipping + optimizer step + zero_grad. Prints one JSON line.
A mode ending in `+rc` turns on transformers' gradient checkpointing (non-reentrant), as tempered's `+rc` recomputes
activations (src/engine/recompute.ts).

    bench/.venv/bin/python bench/llm_train_reference.py <model dir> <gguf file> <lora|full>[+rc] <data.json> <threads> <warmup>
"""
import json
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024)
    return None


model_dir, gguf, mode_arg, data_path, threads, warmup = sys.argv[1:7]
mode, _, flag = mode_arg.partition("+")
threads, warmup = int(threads), int(warmup)
torch.set_num_threads(threads)
torch.manual_seed(1)
inp = json.load(open(data_path))
batch, seq = inp["batch"], inp["seq"]
rows = torch.tensor(inp["rows"], dtype=torch.long)

model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf, dtype=torch.float32, attn_implementation="sdpa")
if flag == "rc":
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
if mode == "lora":
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM"),
    )
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
rss_after_load = mib("VmRSS")

steps = []
for s in range(rows.shape[0] // batch):
    ids = rows[s * batch:(s + 1) * batch]
    t = time.perf_counter()
    c = time.process_time()
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    steps.append({"loss": out.loss.item(), "ms": (time.perf_counter() - t) * 1000, "cpu_ms": (time.process_time() - c) * 1000})
    print(f"  pytorch {mode} step {s + 1} loss {out.loss.item():.4f} {steps[-1]['ms']:.0f} ms", file=sys.stderr, flush=True)

ms = statistics.median([s["ms"] for s in steps[warmup:]])
cpu_ms = statistics.median([s["cpu_ms"] for s in steps[warmup:]])
print(json.dumps({
    "side": "pytorch",
    "mode": mode_arg,
    "threads": threads,
    "batch": batch,
    "seq": seq,
    "torch": torch.__version__,
    "trainableParams": sum(p.numel() for p in params),
    "stepMs": round(ms),
    "tokPerSec": round(batch * seq * 1000 / ms, 1),
    "cpuMsPerStep": round(cpu_ms),
    "tokPerCpuSec": round(batch * seq * 1000 / cpu_ms, 1),
    "losses": [s["loss"] for s in steps],
    "stepMsAll": [round(s["ms"]) for s in steps],
    "rssAfterLoadMiB": rss_after_load,
    "peakRssMiB": mib("VmHWM"),
}))
