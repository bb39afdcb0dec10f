"""A/B of bfloat16 attention on a CPU without bf16 arithmetic: PyTorch's kernel on bf16 numbers (chapter 01's
`Attention`) against `UpcastAttention` (chapter 04: float32 inside), in one process.

Two copies of the model are loaded in bfloat16 (`LLM.load`, so both have `UpcastLinear` prefill); one gets its
attention layers back as plain `Attention`. Both are timed in turn, decoding after a prompt of `--depth` tokens, so the
machine's drift hits both alike: `python bench/attention_ab.py smollm2 --threads 2 [--compile] [--depth 512]`
(models: smollm2, qwen25). Prints ms per decoded token, best and median.
"""
import argparse, torch
from nanollama.model import Attention
from nanollama.quant import compile_decode
from nanollama.kvcache import LLM, KVCache, prefill, decode_one_token
from nanollama.testmodels import smollm2_hf, qwen25_hf
from lm_head_ab import ms_per_token                                  # (this folder is on the path when run as a script)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', choices=['smollm2', 'qwen25'])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--depth', type=int, default=512, help="tokens in the cache before the timed decode (default: 512)")
    p.add_argument('--n-gen', type=int, default=32)
    p.add_argument('--compile', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    path = (smollm2_hf if a.model == 'smollm2' else qwen25_hf)()
    models = {}
    for name in ('bf16 attention', 'float32 attention'):
        m = LLM.load(str(path), dtype='bfloat16').model
        kinds = {type(x).__name__ for x in m.modules() if isinstance(x, Attention)}
        if kinds != {'UpcastAttention'}: raise SystemExit(f"LLM.load gave attention layers {kinds}: this CPU has bf16 arithmetic, nothing to compare")
        if name == 'bf16 attention':
            for x in m.modules():
                if isinstance(x, Attention): x.__class__ = Attention
        models[name] = compile_decode(m) if a.compile else m
    firsts = []                                                      # the two really differ (compiled: two graphs)
    for m in models.values():
        cache = KVCache(m.config, 1, 8, dtype=torch.bfloat16); prefill(m, [1, 2, 3], cache)
        firsts.append(decode_one_token(m, torch.tensor([4]), torch.tensor([3]), cache))
    if torch.equal(*firsts): raise SystemExit("both models gave the same logits: the attention switch did not take")
    times = {k: [] for k in models}
    for _ in range(a.rounds):
        for k, m in models.items(): times[k].append(ms_per_token(m, a.depth, a.n_gen, torch.bfloat16))
    for k, v in times.items():
        s = sorted(v)
        print(f"{a.model} bfloat16{' compiled' if a.compile else ''}, {k}, depth {a.depth}: best {s[0]:.1f} ms/token, "
              f"median {s[len(s) // 2]:.1f} (" + " ".join(f"{x:.1f}" for x in v) + ")")

if __name__ == '__main__': main()
