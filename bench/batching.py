"""Aggregate decode throughput of the continuous-batching engine for several batch sizes (issue 3's benchmark).

usage: python bench/batching.py [--model PATH_OR_ID] [--sizes 1 4 8] [--max-tokens 64] [--threads N]
Default model: SmolLM2-135M-Instruct from the test-model cache (python -m nanollama.testmodels smollm2_hf)."""
import argparse, json, torch
from nanollama.kvcache import LLM
from nanollama.generate import batch_throughput

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model'); p.add_argument('--sizes', type=int, nargs='+', default=[1, 4, 8])
    p.add_argument('--max-tokens', type=int, default=64); p.add_argument('--threads', type=int)
    p.add_argument('--dtype', default='float32'); p.add_argument('--json')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.model is None:
        from nanollama.testmodels import smollm2_hf
        a.model = str(smollm2_hf())
    llm = LLM.load(a.model, device='cpu', dtype=a.dtype)
    batch_throughput(llm, sizes=(1,), max_tokens=8)          # warm-up
    res = batch_throughput(llm, sizes=a.sizes, max_tokens=a.max_tokens)
    print(f"| batch | aggregate decode tok/s | vs batch 1 |  ({a.model}, {a.dtype}, {torch.get_num_threads()} threads)")
    print("|---|---|---|")
    for n, v in res.items(): print(f"| {n} | {v} | {v / res[a.sizes[0]]:.2f}x |")
    if a.json: json.dump(dict(model=a.model, dtype=a.dtype, threads=torch.get_num_threads(), tok_s=res), open(a.json, 'w'), indent=1)

if __name__ == '__main__': main()
