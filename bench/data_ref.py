"""Python reference for bench/data.bench.ts: pandas exact dedupe and datasketch MinHashLSH.

Usage: python data_ref.py DATA.jsonl TRUTH.json ROWS
Prints one JSON line with rows/s and near-duplicate precision/recall on the planted rows.
Same settings as the TypeScript run: NFKC + case fold + whitespace collapse, word 3-shingles,
128 permutations, threshold 0.8. Each row queries the index, is removed if it has a match,
otherwise inserted (keep-first), mirroring what the TypeScript dedupe keeps.
"""
import json
import re
import sys
import time
import unicodedata

import pandas as pd
from datasketch import MinHash, MinHashLSH

path, truth_path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
df = pd.read_json(path, lines=True, nrows=rows)
truth = json.load(open(truth_path))
near_planted = {i for i in truth["near"] if i < rows}
exact_planted = {i for i in truth["exact"] if i < rows}

ws = re.compile(r"\s+")
ZW = dict.fromkeys([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF])


def norm(s):
    return ws.sub(" ", unicodedata.normalize("NFKC", s.translate(ZW)).casefold()).strip()


t0 = time.perf_counter()
c0 = time.process_time()
keys = df["text"].map(norm)
exact = df.assign(key=keys).drop_duplicates(subset="key", keep="first")
t_exact = time.perf_counter() - t0
c_exact = time.process_time() - c0

t0 = time.perf_counter()
c0 = time.process_time()
lsh = MinHashLSH(threshold=0.8, num_perm=128)
removed_near = []
for idx, key in zip(exact.index, exact["key"]):
    words = key.split(" ")
    sh = [" ".join(words[i:i + 3]) for i in range(max(1, len(words) - 2))]
    m = MinHash(num_perm=128)
    m.update_batch([s.encode("utf8") for s in sh])
    if lsh.query(m):
        removed_near.append(idx)
    else:
        lsh.insert(str(idx), m)
t_near = time.perf_counter() - t0
c_near = time.process_time() - c0

found = set(removed_near) | (set(df.index) - set(exact.index))
recall = len(near_planted & found) / max(1, len(near_planted))
precision = len([i for i in removed_near if i in near_planted or i in exact_planted]) / max(1, len(removed_near))
print(json.dumps({
    "rows": rows,
    "exact_seconds": t_exact,
    "exact_rows_per_s": rows / t_exact,
    "exact_rows_per_cpu_s": rows / c_exact,
    "exact_removed": rows - len(exact),
    # near step = the whole dedupe (exact keys + MinHash + LSH), comparable to the TS 'dedupe' step
    "near_seconds": t_exact + t_near,
    "near_rows_per_s": rows / (t_exact + t_near),
    "near_rows_per_cpu_s": rows / (c_exact + c_near),
    "near_removed": len(removed_near),
    "near_precision": precision,
    "near_recall": recall,
}))
