"""nanollama's CUDA paths, checked on a machine with an NVIDIA GPU (CI has none; run it by hand where one is lent).

usage: python tools/cuda_check.py [--models DIR ...] [--gguf FILE] [--checks NAME ...] [--rows ROW ...] [--skip-speed]
                                 [--deadline SECONDS] [--no-cudnn-sdp] [--out results.json]
       python tools/cuda_check.py --shrink-gguf SRC DST N_LAYERS

1. kernels: every scheme's fast layer on CUDA (`kernel_for`) against the reference `DequantLinear`, on odd shapes and
   in float32, float16 and bfloat16; and the CUDA int4/int8 kernels against the CPU ones on the same quantized weights.
2. models: tiny random Llama and Qwen2 (`nanollama.testmodels`) on CUDA against HF transformers on CUDA (logits and greedy
   tokens), q8/q4 against their reference layers, and the compiled decode step against eager; the server's engine with a
   compiled model (warm_up, then one-row, multi-row and gathered steps: no recompile, the eager engine's tokens).
3. the CLI on CUDA: a one-shot generation, `bench`, and the server (one chat completion, streamed and not); with `--gguf
   FILE`, that GGUF file's own quantized weights on CUDA (`gguf_model`): logits against the CPU's, compiled greedy against
   eager, the CLI eager and compiled. `--shrink-gguf SRC DST 2` writes a copy of a real GGUF file with its first 2 blocks
   only (same tokenizer, same tensor types), small enough to carry to a machine that cannot fetch the real one.
4. speed: decode and prefill tok/s of `nanollama bench` rows and of HF transformers on the same weights, same process.
   `--models` names HF directories; one with only a config.json (and tokenizer files) gets random weights first.
   nanollama's rows load through `Transformer.from_pretrained`, so they keep PyTorch's choice of attention kernels as HF's
   rows in the same process do; `--no-cudnn-sdp` gives both what `LLM.load` (the CLI, the server) does on CUDA.
Each check prints PASS/FAIL and goes into the JSON; the exit status is 1 if any failed."""
import argparse, json, os, shutil, signal, subprocess, sys, time, traceback
from pathlib import Path
import torch

RESULTS, T0 = {'checks': [], 'speed': []}, time.time()
DEV = os.environ.get('CHECK_DEVICE', 'cuda')     # CHECK_DEVICE=cpu: a dry run of the script itself, on any machine

def sync():
    if DEV.startswith('cuda'): torch.cuda.synchronize()

def save(a):
    if a.out: Path(a.out).write_text(json.dumps(RESULTS, indent=1))

def check(name, fn, a):
    t = time.time()
    try: detail, ok = fn(), True
    except Exception as e: detail, ok = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}", False
    RESULTS['checks'].append(dict(name=name, ok=ok, detail=detail, s=round(time.time() - t, 1)))
    print(f"{'PASS' if ok else 'FAIL'} {name} ({time.time() - t:.1f} s): {detail}", flush=True)
    save(a)

def rel(a, b): return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12)).item()

# ------------------------------------------------------------------------------------------------------------ 1. kernels
def kernels():
    from nanollama.quant import quantize_linear, kernel_for
    dev, out = torch.device(DEV), []
    assert kernel_for('q8', dev) == dev.type and kernel_for('q4', dev) == dev.type, (kernel_for('q8', dev), kernel_for('q4', dev))
    torch.manual_seed(0)
    for n_out, n_in in [(576, 576), (1536, 576), (896, 4864), (100, 200), (24, 96), (49152, 576)]:
        w, b = torch.randn(n_out, n_in, device=dev) * 0.02, torch.randn(n_out, device=dev) * 0.01
        for scheme in ('q8', 'q4', 'w8a8'):
            fast, ref = quantize_linear(w, b, scheme), quantize_linear(w, b, scheme, backend='reference')
            kind = f"{type(fast).__name__}/{getattr(fast, 'kernel', None)}"
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                for m in (1, 7):
                    x = torch.randn(m, n_in, device=dev, dtype=dtype)
                    y, r = fast(x), ref(x)
                    assert y.dtype == dtype and y.shape == r.shape, (y.dtype, y.shape, r.shape)
                    e = rel(y, r)
                    assert e < 2e-2, f"{scheme} {n_out}x{n_in} {dtype} M={m}: relative error {e:.4f} ({kind})"
            out.append(f"{scheme} {n_out}x{n_in}: {kind}")
    return '; '.join(out[:4]) + f" ... ({len(out)} layers, all within 2e-2 of the reference)"

def cuda_vs_cpu():
    "The same int8/int4 numbers through the CPU kernels and the CUDA ones."
    from nanollama.quant import quantize_linear
    torch.manual_seed(1)
    w, x, msgs = torch.randn(896, 896) * 0.02, torch.randn(3, 896), []
    for scheme in ('q8', 'q4'):
        cpu, gpu = quantize_linear(w, None, scheme), quantize_linear(w.to(DEV), None, scheme)
        if scheme == 'q8': assert torch.equal(cpu.int8(), gpu.int8().cpu()) and torch.equal(cpu.scales, gpu.scales.cpu())
        e = rel(gpu(x.to(DEV)).cpu(), cpu(x))
        assert e < 1e-2, f"{scheme}: CUDA and CPU kernels differ by {e:.4f}"
        msgs.append(f"{scheme} CUDA vs CPU {e:.1e}")
    return ', '.join(msgs)

# ------------------------------------------------------------------------------------------------------------- 2. models
def hf_logits(path, dtype, ids):
    import transformers
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(DEV).eval()
    with torch.no_grad():
        logits = m(torch.tensor([ids], device=DEV)).logits[0].float()
        gen = m.generate(torch.tensor([ids], device=DEV), max_new_tokens=16, do_sample=False, min_new_tokens=16)[0, len(ids):].tolist()
    return logits, gen

def nano(path, dtype=torch.float32, quantize=None, backend='auto', compile=False):
    from nanollama.model import Transformer
    from nanollama.quant import quantizer, compile_decode
    swap = quantizer(quantize, dtype=dtype, backend=backend) if quantize else None
    m = Transformer.from_pretrained(path, DEV, dtype, swap)
    return compile_decode(m) if compile else m

def models():
    from nanollama import testmodels
    from nanollama.kvcache import greedy_generate
    from nanollama.quant import compile_decode, fuse_projections
    out = []
    for name in ('tiny_llama', 'tiny_qwen2'):
        path = getattr(testmodels, name)()
        ids = torch.randint(0, 512, (20,), generator=torch.Generator().manual_seed(0)).tolist()
        for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
            ref, ref_gen = hf_logits(path, dtype, ids)
            m = nano(path, dtype)
            with torch.no_grad(): got = m(torch.tensor([ids], device=DEV))[0].float()
            e = rel(got, ref)
            assert e < tol, f"{name} {dtype}: logits differ from HF by {e:.2e}"
            fuse_projections(m)                                     # as LLM.load does: q, k, v (gate, up) one product
            assert m.model.layers[0].self_attn.qkv_proj is not None, "fuse_projections joined nothing"
            with torch.no_grad(): e_fused = rel(m(torch.tensor([ids], device=DEV))[0].float(), ref)
            assert e_fused < tol, f"{name} {dtype} fused: logits differ from HF by {e_fused:.2e}"
            gen = greedy_generate(m, ids, 16)
            if dtype == torch.float32: assert gen == ref_gen, f"{name}: greedy {gen} != HF {ref_gen}"
            out.append(f"{name} {str(dtype)[6:]} vs HF {e:.1e} (fused {e_fused:.1e})" + (' same 16 greedy' if gen == ref_gen else ' (greedy differs)'))
        with torch.no_grad():
            for q in ('q8', 'q4'):
                fast, refm = fuse_projections(nano(path, quantize=q)), nano(path, quantize=q, backend='reference')
                kinds = sorted({f"{type(l).__name__}/{getattr(l, 'kernel', '-')}" for l in fast.modules() if 'Linear' in type(l).__name__})
                e = rel(fast(torch.tensor([ids], device=DEV)), refm(torch.tensor([ids], device=DEV)))
                assert e < 2e-2, f"{name} {q}: kernel model vs reference model {e:.3f}"
                eager_gen = greedy_generate(fast, ids, 16)
                comp_gen = greedy_generate(compile_decode(fast), ids, 16)
                assert comp_gen == eager_gen, f"{name} {q}: compiled greedy {comp_gen} != eager {eager_gen}"
                out.append(f"{name} {q} {kinds} vs reference {e:.1e}, compiled = eager")
    return '; '.join(out)

def engine_check(tok_dir):
    "The server's engine on CUDA with a compiled q4 model: warm_up, then multi-row, gathered and one-row (compiled) steps, no recompile, eager's tokens."
    from nanollama import testmodels
    from nanollama.loading import Tokenizer
    from nanollama.kvcache import LLM
    from nanollama.generate import Engine
    from nanollama.sampling import SamplingParams
    from nanollama.quant import compile_decode
    tok, path = Tokenizer.from_dir(tok_dir), testmodels.tiny_llama()
    def run(compiled):
        m = nano(path, quantize='q4')
        if compiled: compile_decode(m)
        e = Engine(LLM(m, tok), n_slots=3, n_ctx=32)
        e.warm_up()
        with torch._dynamo.config.patch(error_on_recompile=compiled):
            seqs = [e.submit([1, 2, 3 + i], SamplingParams(temperature=0, max_tokens=n)) for i, n in enumerate((9, 2, 5))]
            while e.has_work: e.step()
        rows = {}
        for step, slot, _ in e.trace: rows.setdefault(step, []).append(slot)
        return [s.out_ids for s in seqs], {tuple(r) for st, r in rows.items() if st > 0}
    t = time.time(); got, kinds = run(True); took = time.time() - t
    want, _ = run(False)
    assert got == want, f"compiled engine {got} != eager {want}"
    assert kinds == {(0, 1, 2), (0, 2), (0,)}, kinds                  # slot 0 alone: the compiled step
    return f"warm_up + 3 requests in {took:.1f} s, steps {sorted(kinds)}, no recompile, tokens = eager"

def shrunk_gguf(src, dst, n_layers: int = 2):
    "A copy of GGUF file `src` with only its first `n_layers` blocks (same metadata and tokenizer, the tensors' bytes as they are): small enough to carry to a lent GPU."
    import gguf
    r = gguf.GGUFReader(str(src))
    arch = r.fields['general.architecture'].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for name, f in r.fields.items():
        if name.startswith('GGUF.') or name == 'general.architecture': continue     # the writer adds these itself
        val = n_layers if name == f'{arch}.block_count' else f.contents()
        w.add_key_value(name, val, f.types[0], f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None)
    for t in r.tensors:
        if t.name.startswith('blk.') and int(t.name.split('.')[1]) >= n_layers: continue
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return Path(dst)

def gguf_check(path):
    "A GGUF file's own quantized weights on CUDA (`gguf_model`, native): logits near the CPU's, compiled greedy = eager, the CLI."
    from nanollama.gguf import gguf_model
    from nanollama.kvcache import greedy_generate
    from nanollama.quant import compile_decode
    gpu, tok = gguf_model(path, DEV, progress=False)
    cpu, _ = gguf_model(path, 'cpu', tokenizer=False, progress=False)
    kinds = sorted({f"{type(l).__name__}/{getattr(l, 'kernel', '-')}" for l in gpu.modules() if 'Linear' in type(l).__name__ or 'Embedding' in type(l).__name__})
    ids = tok.encode("The capital of France is")
    with torch.no_grad():
        e = rel(gpu(torch.tensor([ids], device=DEV))[0].cpu(), cpu(torch.tensor([ids]))[0])
    assert e < 2e-2, f"CUDA and CPU logits differ by {e:.4f} ({kinds})"
    eager = greedy_generate(gpu, ids, 16)
    comp = greedy_generate(compile_decode(gpu), ids, 16)
    assert comp == eager, f"compiled greedy {comp} != eager {eager}"
    msgs = [f"{kinds}, CUDA vs CPU logits {e:.1e}, compiled = eager"]
    for extra in ([], ['--compile']):
        r = cli('--model', path, '--device', DEV, '--prompt', 'Once upon a time', '-n', '8', '--temp', '0', *extra)
        assert r.stdout.strip(), f"no output with {extra}"
        msgs.append(f"CLI {' '.join(extra) or 'eager'}: {loaded_line(r)}")
    return ' | '.join(msgs)

# ---------------------------------------------------------------------------------------------------------------- 3. CLI
def cli(*args, timeout=300):
    r = subprocess.run([sys.executable, '-m', 'nanollama', *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-1500:]}"
    return r

def loaded_line(r) -> str:
    "The CLI's 'loaded ...' line from its stderr (progress bars and warnings come before it)."
    return next((l.strip()[:110] for l in r.stderr.splitlines() if 'loaded' in l), r.stderr.strip()[-110:])

def cli_checks(model):
    msgs = []
    for extra in ([], ['--quantize', 'q4'], ['--quantize', 'q8', '--dtype', 'bfloat16'], ['--quantize', 'q4', '--compile']):
        r = cli('--model', model, '--device', DEV, '--prompt', 'Once upon a time', '-n', '12', '--temp', '0', *extra)
        assert r.stdout.strip(), f"no output with {extra}"
        msgs.append(f"{' '.join(extra) or 'float32'}: {loaded_line(r)}")
    r = cli('bench', '--model', model, '--device', DEV, '-p', '64', '-n', '16', '-r', '1', '--json')
    msgs.append(f"bench: device {json.loads(r.stdout)['device']}")
    return ' | '.join(msgs)

def server_check(model):
    import httpx
    port = 18431
    p = subprocess.Popen([sys.executable, '-m', 'nanollama', '--serve', '--model', model, '--device', DEV, '--quantize', 'q4',
                          '--port', str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                r = httpx.get(url + '/v1/models', timeout=2)
                if r.status_code == 200: model_id = r.json()['data'][0]['id']; break
            except httpx.HTTPError: pass
            if p.poll() is not None: raise RuntimeError(f"server exited {p.returncode}: {p.stdout.read()[-1500:]}")
            time.sleep(0.5)
        body = dict(model=model_id, messages=[dict(role='user', content='Hi')], max_tokens=8, temperature=0)
        r = httpx.post(url + '/v1/chat/completions', json=body, timeout=120)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        text = r.json()['choices'][0]['message']['content']
        chunks = []
        with httpx.stream('POST', url + '/v1/chat/completions', json=dict(body, stream=True), timeout=120) as s:
            for line in s.iter_lines():
                if line.startswith('data: ') and line != 'data: [DONE]':
                    c = json.loads(line[6:])['choices']
                    if c and c[0]['delta'].get('content'): chunks.append(c[0]['delta']['content'])
        assert ''.join(chunks) == text, f"streamed {''.join(chunks)!r} != {text!r}"
        return f"chat completion {r.json()['usage']}, streamed text identical"
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=30)

# -------------------------------------------------------------------------------------------------------------- 4. speed
def with_weights(d: Path) -> Path:
    "`d` itself if it holds weights; else a copy of it with random weights from its config.json (bf16 safetensors)."
    if list(d.glob('*.safetensors')): return d
    import transformers
    out = Path('/tmp/nanollama-random')/d.name
    if not out.exists():
        cfg = transformers.AutoConfig.from_pretrained(d)
        torch.manual_seed(0)
        with torch.device(DEV): m = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        m.save_pretrained(out)
        for f in d.iterdir():
            if f.name != 'config.json': shutil.copy(f, out/f.name)
    return out

def hf_speed(path, dtype, n_prompt, n_gen, reps):
    import transformers
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(DEV).eval()
    ids = torch.randint(0, m.config.vocab_size, (1, n_prompt), device=DEV, generator=torch.Generator(DEV).manual_seed(0))
    fwd = lambda x, past=None: m(input_ids=x, past_key_values=past, use_cache=True, logits_to_keep=1)
    def pp(n):
        sync(); t = time.perf_counter(); fwd(ids[:, :n]); sync(); return time.perf_counter() - t
    def tg(n):
        past, tok = fwd(ids[:, :1]).past_key_values, ids[:, :1]
        sync(); t = time.perf_counter()
        for _ in range(n):
            o = fwd(tok, past); past, tok = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
        sync(); return time.perf_counter() - t
    with torch.no_grad():
        pp(32); tg(2)
        pps, tgs = [n_prompt / pp(n_prompt) for _ in range(reps)], [n_gen / tg(n_gen) for _ in range(reps)]
    return dict(prefill_tps=sum(pps) / reps, decode_tps=sum(tgs) / reps)

def nano_speed(path, dtype, quantize, compile, n_prompt, n_gen, reps):
    from nanollama.kvcache import LLM
    from nanollama.cli import bench
    t = time.perf_counter()
    m = nano(path, dtype, quantize, compile=compile)
    load = time.perf_counter() - t
    r = bench(LLM(m, None, path), n_prompt, n_gen, reps)
    return dict(prefill_tps=r['prefill_tps'], decode_tps=r['decode_tps'], load_compile_s=load)

ROWS = [('nano', torch.float32, None, False), ('nano', torch.bfloat16, None, False), ('nano', torch.float32, 'q8', False),
        ('nano', torch.float32, 'q4', False), ('hf', torch.float32, None, False), ('hf', torch.bfloat16, None, False),
        ('nano', torch.bfloat16, None, True), ('nano', torch.float32, 'q4', True), ('nano', torch.float32, 'q8', True),
        ('nano', torch.float32, None, True)]

def speed(models, a):
    for row in ROWS:
        for d in models:
            if time.time() - T0 > a.deadline: print(f"deadline: skipping {row} on {d}", flush=True); continue
            engine, dtype, q, comp = row
            name = f"{engine}-{str(dtype)[6:]}" + (f"-{q}" if q else '') + ('-compile' if comp else '')
            if a.rows and name not in a.rows: continue
            try:
                path = with_weights(Path(d))
                r = (hf_speed(path, dtype, a.n_prompt, a.n_gen, a.reps) if engine == 'hf'
                     else nano_speed(path, dtype, q, comp, a.n_prompt, a.n_gen, a.reps))
                if a.no_cudnn_sdp: name += ' (no cuDNN attention)'
                RESULTS['speed'].append(dict(model=Path(d).name, row=name, **r))
                print(f"speed {Path(d).name} {name}: decode {r['decode_tps']:.1f} tok/s, prefill {r['prefill_tps']:.0f} tok/s", flush=True)
            except Exception as e:
                RESULTS['speed'].append(dict(model=Path(d).name, row=name, error=f"{type(e).__name__}: {e}"))
                print(f"speed {Path(d).name} {name}: ERROR {type(e).__name__}: {e}", flush=True)
            if DEV == 'cuda': torch.cuda.empty_cache()
            save(a)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='*', default=[], help="HF model directories for the CLI and speed checks")
    p.add_argument('--out', default='cuda_check.json')
    p.add_argument('--deadline', type=float, default=1e9, help="start no speed row after this many seconds")
    p.add_argument('--skip-speed', action='store_true')
    p.add_argument('--rows', nargs='*', help="speed rows to run (default: all), e.g. nano-bfloat16-compile hf-float32")
    p.add_argument('--checks', nargs='*', default=['kernels', 'models', 'engine', 'cli', 'server', 'gguf'], help="which checks (default: all)")
    p.add_argument('--gguf', help="a GGUF file to run natively on CUDA (the gguf check)")
    p.add_argument('--shrink-gguf', nargs=3, metavar=('SRC', 'DST', 'N_LAYERS'), help="write DST: SRC with its first N_LAYERS blocks only, then exit")
    p.add_argument('--no-cudnn-sdp', action='store_true', help="keep PyTorch's attention off cuDNN (speed rows get a suffix)")
    p.add_argument('-p', '--n-prompt', type=int, default=512)
    p.add_argument('-n', '--n-gen', type=int, default=128)
    p.add_argument('-r', '--reps', type=int, default=2)
    a = p.parse_args()
    if a.shrink_gguf: src, dst, n = a.shrink_gguf; print(shrunk_gguf(src, dst, int(n))); return
    if DEV == 'cuda' and not torch.cuda.is_available(): sys.exit("no CUDA device")
    RESULTS['env'] = dict(torch=torch.__version__, device=torch.cuda.get_device_name() if DEV == 'cuda' else DEV,
                          capability=torch.cuda.get_device_capability() if DEV == 'cuda' else None)
    print(RESULTS['env'], flush=True)
    if a.no_cudnn_sdp: torch.backends.cuda.enable_cudnn_sdp(False)
    if 'kernels' in a.checks:
        check('kernels vs reference on CUDA', kernels, a)
        check('CUDA kernels vs CPU kernels', cuda_vs_cpu, a)
    if 'models' in a.checks: check('tiny models on CUDA vs HF transformers; q8/q4; compiled', models, a)
    if a.gguf and 'gguf' in a.checks: check('a GGUF file natively on CUDA', lambda: gguf_check(a.gguf), a)
    if a.models:
        model = str(with_weights(Path(a.models[0])))
        if 'engine' in a.checks: check('engine on CUDA, compiled', lambda: engine_check(model), a)
        if 'cli' in a.checks: check('CLI on CUDA', lambda: cli_checks(model), a)
        if 'server' in a.checks: check('server on CUDA', lambda: server_check(model), a)
        if not a.skip_speed: speed(a.models, a)
    save(a)
    sys.exit(0 if all(c['ok'] for c in RESULTS['checks']) else 1)

if __name__ == '__main__': main()
