"""What a hand-written q4 kernel would be worth on this CPU: a probe for issue 4, not part of nanollama.

nanollama's q4 layers call PyTorch's int4 kernel (`_weight_int4pack_mm_for_cpu`), as issue 4 asks ("from pure
PyTorch"). On an AVX2-only CPU that kernel widens every weight to float and tops out near 11 billion weights per second,
and q4 decoding stays behind llama.cpp. llama.cpp instead rounds the activations to int8 (one scale per 32) and
multiplies them with the 4-bit weights in AVX2's integer dot products. This script builds such a kernel (below, about
50 lines of C++, built with `torch.utils.cpp_extension` on first run) and measures, in one run:

1. `kernel`: the kernel alone against PyTorch's int4 kernel on each model's layer shapes, weights streamed from DRAM;
2. `step`: the compiled q4 decode step as shipped against the same step with the probe kernel in every q4 layer
   (one-row products only; prefill and the `lm_head` as shipped) and against llama.cpp on the test model's GGUF file
   (in this process, through llama-cpp-python, as `compare.py` runs it), the three taking turns each round: decode
   tok/s like `nanollama bench`'s (128 greedy tokens after a one-token prompt); then greedy agreement and perplexity
   of chapter 04's paragraph, token by token through the step.

`python bench/q4_kernel_probe.py --models smollm2 qwen25 --rounds 5` (needs g++, ninja and an AVX2/FMA/F16C CPU).
The weights go into llama.cpp's Q4_1 block layout: per 32 weights an fp16 scale d and offset m and 16 bytes of nibbles
(element j low, j+16 high), w = q·d + m, onto which nanollama's q4 groups (w = (q-8)·s + z) map with m = z - 8s
(rounded to fp16).
"""
import argparse, math, os, statistics, sys, tempfile, time, types
from pathlib import Path
import torch, torch.nn.functional as F

SRC = r'''
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cmath>
#include <vector>
static inline float hsum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a)); a = _mm_add_ss(a, _mm_movehdup_ps(a)); return _mm_cvtss_f32(a);
}
// y [M, N] = x [M, K] (float, rounded here to int8 per 32) times w [N, K/32 blocks of 20 bytes]
torch::Tensor q4_gemv(torch::Tensor x, torch::Tensor w, int64_t N) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous float [M, K]");
  const int64_t M = x.size(0), K = x.size(1), G = K / 32;
  TORCH_CHECK(K % 32 == 0 && w.dim() == 2 && w.size(0) == N && w.size(1) == G * 20, "w: [N, K/32*20] blocks");
  auto out = torch::empty({M, N}, x.options());
  std::vector<int8_t> xq(M * K); std::vector<float> dx(M * G), xs(M * G);   // int8 x, its scale, scale * sum
  const float* xp = x.data_ptr<float>();
  for (int64_t i = 0; i < M * G; i++) {
    const float* b = xp + i * 32; float amax = 0; int s = 0;
    for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(b[j]));
    const float d = amax / 127.f, id = d > 0 ? 1.f / d : 0.f;
    for (int j = 0; j < 32; j++) { int q = (int)std::nearbyint(b[j] * id); xq[i * 32 + j] = (int8_t)q; s += q; }
    dx[i] = d; xs[i] = d * s;
  }
  const uint8_t* wp = w.data_ptr<uint8_t>(); float* op = out.data_ptr<float>();
  at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = begin; n < end; n++) {
        const uint8_t* row = wp + n * G * 20; const int8_t* xr = xq.data() + m * K;
        __m256 acc = _mm256_setzero_ps(); float acc_m = 0;
        for (int64_t g = 0; g < G; g++) {
          const uint8_t* blk = row + g * 20;
          _mm_prefetch((const char*)(blk + 2048), _MM_HINT_T0);
          const float d = _cvtsh_ss(*(const uint16_t*)blk), mn = _cvtsh_ss(*(const uint16_t*)(blk + 2));
          const __m128i p = _mm_loadu_si128((const __m128i*)(blk + 4));
          const __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(p, 4), p), low);   // 32 values 0..15
          const __m256i xv = _mm256_loadu_si256((const __m256i*)(xr + g * 32));
          const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), ones);             // 8 int32 partial sums
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * dx[m * G + g]), acc);
          acc_m += mn * xs[m * G + g];
        }
        op[m * N + n] = hsum(acc) + acc_m;
      }
  });
  return out;
}
'''

def build():
    "The probe kernel as a custom op `q4probe::gemv(x, w, n)` (built once per user and PyTorch version, in a temporary directory)."
    from torch.utils.cpp_extension import load_inline
    d = Path(tempfile.gettempdir()) / f'nanollama-q4-probe-{os.getuid()}-torch{torch.__version__}'; d.mkdir(exist_ok=True)
    ext = load_inline('nanollama_q4_probe', cpp_sources=SRC, functions=['q4_gemv'], build_directory=str(d),
                      extra_cflags=['-O3', '-mavx2', '-mfma', '-mf16c', '-fopenmp'], extra_ldflags=['-fopenmp'])
    lib = torch.library.Library('q4probe', 'DEF')
    lib.define('gemv(Tensor x, Tensor w, int n) -> Tensor')
    lib.impl('gemv', lambda x, w, n: ext.q4_gemv(x, w, n), 'CPU')
    lib.impl('gemv', lambda x, w, n: x.new_empty(x.shape[0], n), 'Meta')
    return ext, lib

def pack(q, s, z):
    "q [N, K] in 0..15 with w = (q-8)·s + z per 32: Q4_1 blocks {fp16 d = s, fp16 m = z - 8s, 16 bytes} as uint8 [N, K/32*20]."
    N, K = q.shape
    d = s.float(); hdr = torch.stack([d, z.float() - 8 * d], -1).half().view(torch.uint8)   # [N, G, 4]
    qb = q.to(torch.uint8).reshape(N, K // 32, 2, 16)
    return torch.cat([hdr, qb[:, :, 0] | (qb[:, :, 1] << 4)], -1).reshape(N, -1).contiguous()

def kernel_table(ext, shapes):
    "Weights streamed from DRAM (copies cycled, 1.6e8 weights in all): G weights/s of PyTorch's int4 kernel and of the probe, and GB/s of a plain `sum` over the probe's copies."
    rows = []
    for N, K in shapes:
        G, nw = K // 32, max(2, int(1.6e8 // (N * K)))
        ws = [(torch.randint(0, 16, (N, K), dtype=torch.uint8), torch.rand(N, G) * 0.01, torch.randn(N, G) * 0.01) for _ in range(nw)]
        x = torch.randn(1, K); xb = x.bfloat16()
        ref = x @ ((ws[0][0].float() - 8) * ws[0][1].repeat_interleave(32, 1) + ws[0][2].repeat_interleave(32, 1)).T
        i4 = [(torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1),
               torch.stack([s, z], -1).to(torch.bfloat16).transpose(0, 1).contiguous()) for q, s, z in ws]
        pr = [pack(*w) for w in ws]
        def rate(f, args):
            for a in args[:2]: f(*a)
            best = math.inf
            for _ in range(3):
                t = time.perf_counter()
                for a in args: f(*a)
                best = min(best, (time.perf_counter() - t) / len(args))
            return N * K / best / 1e9
        rel = lambda y: f"{((y.float() - ref).abs().max() / ref.abs().max()).item():.1e}"
        int4 = lambda w, sz: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, w, 32, sz)
        read = rate(lambda w: w.view(torch.int64).sum(), [(w,) for w in pr]) * pr[0].numel() / (N * K)   # GB/s
        rows.append([f"{N}×{K}", f"{rate(int4, i4):.1f}", rel(int4(*i4[0])), f"{rate(lambda w: ext.q4_gemv(x, w, N), [(w,) for w in pr]):.1f}",
                     rel(ext.q4_gemv(x, pr[0], N)), f"{read:.1f}"])
    return rows

def probe_forward(self, x):
    "A q4 layer's forward with the probe kernel for one row (a decode step); more rows as shipped."
    import nanollama.quant as Q
    if x.numel() != self.in_features: return Q.Q4Linear.forward(self, x)
    y = torch.ops.q4probe.gemv(x.reshape(1, -1).float().contiguous(), self.probe_w, self.out_features)
    y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
    return y if self.bias is None else y + self.bias

def load(path, probe):
    "nanollama's q4 model of `path`, compiled; with `probe`, every q4 layer's one-row products on the probe kernel."
    import nanollama.quant as Q
    from nanollama.kvcache import LLM
    llm = LLM.load(str(path), dtype='float32', quantize='q4', compile=False)
    for m in llm.model.modules() if probe else ():
        if isinstance(m, Q.Q4Linear):
            assert m.unpackable() and not m.k_pad, m
            sz = m.scales_and_zeros[:, :m.out_features].transpose(0, 1).float()
            m.register_buffer('probe_w', pack(Q.unpack_int4_cpu(m.weight)[:m.out_features], sz[..., 0], sz[..., 1]))
            m.forward = types.MethodType(probe_forward, m)
    Q.compile_decode(llm.model)
    return llm

def decode_tps(llm, n_gen=128):
    "Like `nanollama bench`'s decode: a one-token prompt, then n_gen greedy one-token steps; tokens per second."
    from nanollama.kvcache import KVCache, prefill, decode_one_token
    cache = KVCache(llm.config, 1, n_gen + 2, dtype=llm.dtype)
    with torch.no_grad():
        tok = prefill(llm.model, [100], cache).reshape(-1, llm.config.vocab_size)[-1:].argmax(-1)
        t = time.perf_counter()
        for i in range(n_gen): tok = decode_one_token(llm.model, tok, torch.tensor([1 + i]), cache).argmax(-1)
    return n_gen / (time.perf_counter() - t)

def stepwise(llm, ids, n_new=0):
    "Token by token through the decode step: the perplexity of `ids`, and n_new greedy tokens after them."
    from nanollama.kvcache import KVCache, decode_one_token
    cache, nll, out = KVCache(llm.config, 1, len(ids) + n_new + 1, dtype=llm.dtype), [], []
    with torch.no_grad():
        for i in range(len(ids) + n_new):
            t = ids[i] if i < len(ids) else out[-1]
            logits = decode_one_token(llm.model, torch.tensor([t]), torch.tensor([i]), cache).reshape(-1).float()
            if i + 1 < len(ids): nll.append(-F.log_softmax(logits, -1)[ids[i + 1]].item())
            else: out.append(int(logits.argmax()))
    return math.exp(statistics.mean(nll)), out

def llamacpp_tps(gguf, threads):
    "A function giving llama.cpp's decode tok/s on `gguf` as `compare.py` measures it, or the reason it can't."
    try:
        import numpy as np, llama_cpp
    except ImportError: return 'not installed'
    try: llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    except Exception as e: return f"error: {e}"
    vocab = llm.n_vocab()
    last_logits = lambda: np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))
    def tps(n_gen=128):
        llm.reset(); llm.eval([100]); tok = 100
        t = time.perf_counter()
        for _ in range(n_gen): llm.eval([tok]); tok = int(np.argmax(last_logits()))
        return n_gen / (time.perf_counter() - t)
    tps(2)
    return tps

PARAGRAPH = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined movable "
             "metal type, oil-based ink and a wooden screw press. Within decades, printing shops had spread across Europe, "
             "and the cost of books fell so quickly that ordinary merchants, students and craftsmen could afford to own them. "
             "Historians still argue about how much of the Reformation, the scientific revolution and the rise of")

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['smollm2', 'qwen25'], choices=['smollm2', 'qwen25'])
    p.add_argument('--parts', nargs='+', default=['kernel', 'step'], choices=['kernel', 'step'])
    p.add_argument('--rounds', type=int, default=5, help="decode runs of each step, alternating (default: 5)")
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    if torch.backends.cpu.get_cpu_capability() not in ('AVX2', 'AVX512'): sys.exit("the probe kernel needs an x86 CPU with AVX2")
    torch.set_num_threads(a.threads)
    from nanollama.testmodels import smollm2_hf, qwen25_hf, smollm2_gguf, qwen25_gguf
    from nanollama.kvcache import LLM
    ext, lib = build()
    table = lambda head, rows: '\n'.join(['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)] + ['| ' + ' | '.join(r) + ' |' for r in rows])
    print(f"threads: {a.threads} · torch {torch.__version__}\n")
    if 'kernel' in a.parts:
        shapes = {'smollm2': [(960, 576), (576, 576), (3072, 576), (576, 1536)], 'qwen25': [(1152, 896), (896, 896), (9728, 896), (896, 4864)]}
        rows = kernel_table(ext, [s for m in a.models for s in shapes[m]])
        print(table(['layer [out × in]', "PyTorch int4 G weights/s", 'rel. error', 'probe G weights/s', 'rel. error', '`sum` GB/s'], rows) + '\n', flush=True)
    if 'step' in a.parts:
        for name in a.models:
            path, gguf = {'smollm2': (smollm2_hf, smollm2_gguf), 'qwen25': (qwen25_hf, qwen25_gguf)}[name]
            path = path()
            ref = LLM.load(str(path), dtype='float32', compile=False)
            ids = ref.tokenizer.encode(PARAGRAPH); ids = list(getattr(ids, 'ids', ids))
            ppl_f32 = stepwise(ref, ids)[0]; del ref
            llms = {k: load(path, k == 'probe') for k in ('shipped', 'probe')}
            runners = {k: (lambda l=l: decode_tps(l)) for k, l in llms.items()}
            lc = llamacpp_tps(gguf(), a.threads)
            if callable(lc): runners['llama.cpp'] = lc
            tps = {k: [] for k in runners}
            for _ in range(a.rounds):                                        # the three take turns
                for k, f in runners.items(): tps[k].append(f())
            quality = {k: stepwise(l, ids, 32) for k, l in llms.items()}
            same = next((i for i, (x, y) in enumerate(zip(quality['shipped'][1], quality['probe'][1])) if x != y), 32)
            ref_tps = statistics.median(tps['llama.cpp']) if 'llama.cpp' in tps else None
            rows = []
            for k, label in (('shipped', 'q4 compiled, PyTorch int4 kernel'), ('probe', 'q4 compiled, probe kernel'), ('llama.cpp', f'llama.cpp, {Path(gguf()).name}')):
                if k not in tps: rows.append([name, label, lc, '—', '—', '—']); continue
                med = statistics.median(tps[k])
                rows.append([name, label, f"{med:.1f} ({min(tps[k]):.1f}–{max(tps[k]):.1f})", f"{med / ref_tps:.2f}x" if ref_tps else '—',
                             f"{quality[k][0]:.2f} ({quality[k][0] / ppl_f32 - 1:+.1%})" if k in quality else '—',
                             ('32' if k == 'shipped' else str(same)) if k in quality else '—'])
            print(table(['model', 'decode', 'tg128 tok/s, median (range)', 'vs llama.cpp', 'perplexity (vs float32)',
                         'greedy tokens equal to shipped (of 32)'], rows) + '\n', flush=True)

if __name__ == '__main__': main()
