"""A/B of q4's lm_head: weight-only q8 (`_weight_int8pack_mm`) against w8a8 (fbgemm, int8 activations), in one process.

Both q4 models are loaded and compiled, then timed in turn, so the machine's drift hits both alike:
`python bench/lm_head_ab.py smollm2 --threads 2` (models: smollm2, qwen25). Prints ms per decoded token, best and median.
"""
import argparse, time, torch
import nanollama.quant as Q
from nanollama.kvcache import LLM, KVCache, prefill, decode_one_token
from nanollama.testmodels import smollm2_hf, qwen25_hf

def ms_per_token(model, n_prompt=512, n_gen=48, dtype=torch.float32):
    "Mean ms per decoded token after a prompt of `n_prompt` tokens (the cache in `dtype`, the model's activations')."
    cache = KVCache(model.config, 1, n_prompt + n_gen + 64, dtype=dtype)   # never filled to the end: a full cache compiles anew
    with torch.no_grad():
        prefill(model, list(range(100, 100 + n_prompt)), cache)
        tok = torch.tensor([5])
        decode_one_token(model, tok, torch.tensor([n_prompt]), cache)        # warm
        t = time.perf_counter()
        for i in range(n_gen): decode_one_token(model, tok, torch.tensor([n_prompt + 1 + i]), cache)
        return (time.perf_counter() - t) / n_gen * 1e3

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', choices=['smollm2', 'qwen25'])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=6)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    path = (smollm2_hf if a.model == 'smollm2' else qwen25_hf)()
    models = {}
    for name, head in (('q8 head', 'q8'), ('w8a8 head', 'w8a8')):
        orig, Q.head_scheme = Q.head_scheme, lambda s, l='auto', head=head: head if l == 'auto' else l
        try: models[name] = LLM.load(str(path), quantize='q4', compile=True).model
        finally: Q.head_scheme = orig
    times = {k: [] for k in models}
    for _ in range(a.rounds):
        for k, m in models.items(): times[k].append(ms_per_token(m))
    for k, v in times.items():
        s = sorted(v); print(f"{a.model} q4, {k}: best {s[0]:.1f} ms/token, median {s[len(s) // 2]:.1f} (" + " ".join(f"{x:.1f}" for x in v) + ")")

if __name__ == '__main__': main()
