"""PyTorch side of bench/generate.bench.ts: transformers on the same GGUF (dequantized to float32 by
transformers' GGUF loader), eager, the same thread count. Prints one JSON line.

    bench/.venv/bin/python bench/generate_reference.py <model dir> <gguf file name> <threads> <inputs.json>
"""
import json
import resource
import sys
import time

import torch
from transformers import AutoModelForCausalLM

model_dir, gguf, threads, inputs_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
inp = json.load(open(inputs_path))
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf, dtype=torch.float32)
model.eval()
load_s = time.perf_counter() - t0

out = {"load_s": load_s, "torch": torch.__version__}
with torch.inference_mode():
    prefill = torch.tensor([inp["prefill"]])
    model(prefill[:, :16], use_cache=True, logits_to_keep=1)  # warm-up
    times = []
    for _ in range(inp["repeats"]):
        t = time.perf_counter()
        # logits_to_keep=1: the head only for the last position, as generate() runs the prompt.
        model(prefill, use_cache=True, logits_to_keep=1)
        times.append(time.perf_counter() - t)
    times.sort()
    out["prefill_tok_s"] = len(inp["prefill"]) / times[len(times) // 2]
    for batch in inp["batches"]:
        ids = torch.tensor(inp["prompts"][:batch])
        t = time.perf_counter()
        res = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=inp["new_tokens"], min_new_tokens=inp["new_tokens"],
                             do_sample=False, pad_token_id=inp["pad_id"])
        dt = time.perf_counter() - t
        assert res.shape[1] - ids.shape[1] == inp["new_tokens"]
        out[f"gen{batch}_tok_s"] = batch * inp["new_tokens"] / dt
        out[f"gen{batch}_first"] = res[0, ids.shape[1]:ids.shape[1] + 8].tolist()
    if inp["context"]:
        class FirstTokenClock:
            # generate() calls put() with the prompt, then with each new token.
            def __init__(self):
                self.puts = 0
                self.first = None
            def put(self, value):
                self.puts += 1
                if self.puts == 2:
                    self.first = time.perf_counter()
            def end(self):
                pass
        clock = FirstTokenClock()
        ids = torch.tensor([inp["context"]])
        res = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=inp["new_tokens"], min_new_tokens=inp["new_tokens"],
                             do_sample=False, pad_token_id=inp["pad_id"], streamer=clock)
        out["ctx_decode_tok_s"] = (inp["new_tokens"] - 1) / (time.perf_counter() - clock.first)
        out["ctx_first"] = res[0, ids.shape[1]:ids.shape[1] + 8].tolist()
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
