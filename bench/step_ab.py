"""A/B of ways to compile the decode step, in one process: each variant compiles its own copy of the model, then all
are timed in turn, so the machine's drift hits them alike.

`python bench/step_ab.py smollm2 q4 default float-inputs --rounds 30` (models: smollm2, qwen25; precision: float32,
bfloat16, q8, q4). A variant is `default` (what `compile_decode` does), `float-inputs` (Python floats such as each
norm's eps left as graph inputs, as before `specialize_float`), or a Python dict of Inductor options, e.g.
"{'cpp_wrapper': True}". Prints ms per decoded token, median and best, and the compile time of each.
"""
import argparse, ast, contextlib, statistics, time, torch
import nanollama.quant as Q
from nanollama.kvcache import LLM, KVCache, prefill, decode_one_token
from nanollama.testmodels import smollm2_hf, qwen25_hf

def load(path, precision, variant):
    "The model, compiled the `variant` way, and the seconds compiling took."
    dtype, quant = ('float32', precision) if precision in ('q8', 'q4') else (precision, None)
    llm = LLM.load(str(path), dtype=dtype, quantize=quant, compile=False)
    options = ast.literal_eval(variant) if variant.startswith('{') else {}
    saved = Q._constant_floats
    if variant == 'float-inputs': Q._constant_floats = contextlib.nullcontext
    t = time.perf_counter()
    try: Q.compile_decode(llm.model, options=options)
    finally: Q._constant_floats = saved
    return llm, time.perf_counter() - t

def ms_per_token(llm, cache, n_prompt, n_gen=48):
    "Mean ms per decoded token after the prompt already in `cache`."
    tok, t = torch.tensor([5]), time.perf_counter()
    with torch.no_grad():
        for i in range(n_gen): tok = decode_one_token(llm.model, tok, torch.tensor([n_prompt + i]), cache).argmax(-1)
    return (time.perf_counter() - t) / n_gen * 1e3

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', choices=['smollm2', 'qwen25'])
    p.add_argument('precision', choices=['float32', 'bfloat16', 'q8', 'q4'])
    p.add_argument('variants', nargs='+')
    p.add_argument('--prompt', type=int, default=99, help="tokens in the cache before timing (default: 99)")
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=12)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    path = (smollm2_hf if a.model == 'smollm2' else qwen25_hf)()
    runs = {}
    for v in a.variants:
        llm, secs = load(path, a.precision, v)
        cache = KVCache(llm.config, 1, a.prompt + 128, dtype=llm.dtype)       # each round rewrites the same 48 positions
        with torch.no_grad(): prefill(llm.model, list(range(100, 100 + a.prompt)), cache)
        ms_per_token(llm, cache, a.prompt, 4)                                  # warm
        runs[v] = (llm, cache, secs, [])
    for r in range(a.rounds):
        for v, (llm, cache, _, times) in runs.items(): times.append(ms_per_token(llm, cache, a.prompt))
    for v, (_, _, secs, times) in runs.items():
        print(f"{a.model} {a.precision} {v}: median {statistics.median(times):.2f} ms/token, best {min(times):.2f}, compile {secs:.0f} s")

if __name__ == '__main__': main()
