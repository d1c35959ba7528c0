"""sentence-transformers side of bench/embed.bench.ts: same model, batch 32, seq 128, same threads.
Needs `pip install torch sentence-transformers` in bench/.venv (the PyPI torch wheel also needs its CUDA
libraries to import, even on CPU)."""
import sys, time
model_dir, threads, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    import torch
    from sentence_transformers import SentenceTransformer
except Exception as e:  # reported by the TypeScript side
    sys.exit(f"sentence-transformers/torch unavailable: {type(e).__name__}: {str(e)[:120]}")
torch.set_num_threads(threads)
m = SentenceTransformer(model_dir, device="cpu")
m.max_seq_length = 128
sentences = [f"sentence {i}: " + "the quick brown fox jumps over the lazy dog and keeps running " * 12 for i in range(32)]
m.encode(sentences, batch_size=32)
t0 = time.perf_counter()
for _ in range(batches):
    m.encode(sentences, batch_size=32, normalize_embeddings=True)
print(f"sentence-transformers (torch {torch.__version__}, {threads} threads) sentences/s: {batches * 32 / (time.perf_counter() - t0):.1f}")
