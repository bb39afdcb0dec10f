"""nanollama vs HF transformers vs llama.cpp: decode and prefill speed, load time and peak memory, side by side.

usage: python bench/compare.py [--models smollm2 qwen25] [--rows nano-f32 nano-q4 hf-f32 llamacpp ...]
                               [-p 512] [-n 128] [-r 2] [--threads N] [--json bench/results.json] [--markdown PATH] [--quick]

Every row (one engine + settings on one model) runs in its own subprocess, one after the other, so peak RSS is per row.
- nanollama rows call `python -m nanollama bench --json` (HF safetensors directory, or the GGUF file for `nano-gguf*`).
- HF transformers and llama.cpp (llama-cpp-python) rows run this file again with `--_run hf|llamacpp`, which mirrors
  `nanollama bench`: the same seeded random prompt ids, warm-up (32-token prefill + 2 decode steps), then
  `-r` timed prefills of `-p` tokens and `-r` timed runs of `-n` greedy single-token decode steps.
Rows: nano-{f32,bf16,q8,q4,gguf}[-compile], hf-{f32,bf16}, llamacpp (shell-style wildcards work: --rows 'nano-*').
--quick is `-p 32 -n 8 -r 1`, for a smoke test. Progress goes to stderr, the markdown table to stdout."""
import argparse, fnmatch, importlib.metadata, importlib.util, json, os, statistics, subprocess, sys, time
from pathlib import Path

MODELS = {'smollm2': ('smollm2_hf', 'smollm2_gguf'), 'qwen25': ('qwen25_hf', 'qwen25_gguf')}   # nanollama.testmodels names

def _row_specs() -> dict:
    "key -> (engine, dtype, quantize, compile); dtype is the compute dtype, used to pick the HF row to compare with."
    rows = {}
    for name, dtype, q in [('f32', 'float32', None), ('bf16', 'bfloat16', None), ('q8', 'float32', 'q8'),
                           ('q4', 'float32', 'q4'), ('gguf', 'float32', 'gguf')]:
        for c in (False, True): rows[f"nano-{name}{'-compile' if c else ''}"] = ('nanollama', dtype, q, c)
    rows['hf-f32'], rows['hf-bf16'] = ('hf', 'float32', None, False), ('hf', 'bfloat16', None, False)
    rows['llamacpp'] = ('llamacpp', None, 'gguf', False)
    return rows
ROWS = _row_specs()

# ---------------------------------------------------------------------------------------------- runners (subprocesses)
def _peak_rss() -> int:
    "Peak RSS of this process: VmHWM on Linux (ru_maxrss would include the parent's peak from before exec)."
    try: return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:'))
    except (OSError, StopIteration): pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == 'darwin' else 1024)

def _measure(pp, tg, n_prompt, n_gen, reps) -> dict:
    "The `nanollama bench` policy: warm up, then `reps` prefills and `reps` decodes; mean and std of tok/s."
    pp(min(32, n_prompt)); tg(2)
    pps = [n_prompt / pp(n_prompt) for _ in range(reps)]
    tgs = [n_gen / tg(n_gen) for _ in range(reps)]
    std = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
    return dict(prefill_tps=statistics.mean(pps), prefill_tps_std=std(pps), decode_tps=statistics.mean(tgs), decode_tps_std=std(tgs))

def run_hf(a) -> dict:
    "HF transformers: `from_pretrained` (timed), prefill with `logits_to_keep=1`, manual greedy loop over past_key_values."
    import torch, transformers
    torch.set_num_threads(a.threads)
    dtype_kw = 'dtype' if tuple(map(int, transformers.__version__.split('.')[:2])) >= (4, 56) else 'torch_dtype'
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, **{dtype_kw: getattr(torch, a.dtype)}).eval()
    load_s = time.perf_counter() - t0
    assert model.dtype == getattr(torch, a.dtype), f"loaded as {model.dtype}, not {a.dtype}"
    ids = torch.tensor([a.ids])
    fwd = lambda x, past=None: model(input_ids=x, past_key_values=past, use_cache=True, logits_to_keep=1)
    def pp(n):                                   # seconds for a fresh n-token prefill
        t0 = time.perf_counter(); fwd(ids[:, :n]); return time.perf_counter() - t0
    def tg(n):                                   # seconds for n single-token greedy steps after a 1-token prefill
        past, tok = fwd(ids[:, :1]).past_key_values, ids[:, :1]
        t0 = time.perf_counter()
        for _ in range(n):
            out = fwd(tok, past)
            past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - t0
    with torch.inference_mode(): r = _measure(pp, tg, len(a.ids), a.n_gen, a.repetitions)
    return dict(load_s=load_s, **r, version=importlib.metadata.version('transformers'))

def run_llamacpp(a) -> dict:
    "llama.cpp via llama-cpp-python: constructing `Llama` (timed), `eval` of the prompt, greedy steps by argmax."
    import numpy as np, llama_cpp
    from llama_cpp import Llama
    t0 = time.perf_counter()
    llm = Llama(model_path=a.model, n_ctx=max(1024, len(a.ids) + a.n_gen + 8), n_threads=a.threads,
                n_threads_batch=a.threads, n_batch=512, verbose=False)
    load_s = time.perf_counter() - t0
    if max(a.ids) >= (vocab := llm.n_vocab()): raise ValueError(f"prompt id {max(a.ids)} >= llama.cpp's vocab size {vocab}")
    last_logits = lambda: np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))
    def pp(n):
        llm.reset(); t0 = time.perf_counter(); llm.eval(a.ids[:n]); return time.perf_counter() - t0
    def tg(n):
        llm.reset(); llm.eval(a.ids[:1]); tok = a.ids[0]
        t0 = time.perf_counter()
        for _ in range(n):
            llm.eval([tok]); tok = int(np.argmax(last_logits()))
        return time.perf_counter() - t0
    r = _measure(pp, tg, len(a.ids), a.n_gen, a.repetitions)
    return dict(load_s=load_s, **r, version=importlib.metadata.version('llama_cpp_python'))

def run_child(a):
    "Entry point of `--_run`: print one JSON object (with peak RSS) on stdout."
    r = {'hf': run_hf, 'llamacpp': run_llamacpp}[a._run](a)
    print(json.dumps(dict(r, peak_rss_bytes=_peak_rss())))

# --------------------------------------------------------------------------------------------------- driver (parent)
def model_files(name: str) -> tuple[Path, Path]:
    "The HF directory and GGUF file of a test model, fetched and cached by nanollama."
    import nanollama.testmodels as tm
    hf, gguf = MODELS[name]
    return getattr(tm, hf)(), getattr(tm, gguf)()

def prompt_ids(hf_dir: Path, n: int) -> list[int]:
    "The same random ids as `nanollama bench` (seed 0, over the model's vocab)."
    import torch
    vocab = json.loads((hf_dir/'config.json').read_text())['vocab_size']
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(0)).tolist()

def row_command(key, hf_dir, gguf, ids, a) -> list[str]:
    engine, dtype, q, compile_ = ROWS[key]
    common = ['-n', str(a.n_gen), '-r', str(a.repetitions)]
    if engine == 'nanollama':
        cmd = [sys.executable, '-m', 'nanollama', 'bench', '--model', str(gguf if q == 'gguf' else hf_dir),
               '--dtype', dtype, '-p', str(len(ids)), *common, '--json']
        return cmd + (['--quantize', q] if q in ('q8', 'q4') else []) + (['--compile'] if compile_ else [])
    return [sys.executable, __file__, '--_run', engine, '--model', str(gguf if engine == 'llamacpp' else hf_dir),
            '--dtype', str(dtype), '--threads', str(a.threads), '--ids', ','.join(map(str, ids)), *common]

def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.replace('\r', '\n').splitlines() if l.strip()]
    return lines[-1] if lines else 'no output'

def run_row(key, model, hf_dir, gguf, ids, a) -> dict:
    "Run one row in a subprocess; its JSON result, or an `error` (the last stderr line)."
    engine, dtype, q, compile_ = ROWS[key]
    row = dict(model=model, row=key, engine=engine, dtype=dtype, quant=gguf.stem.split('.')[-1] if q == 'gguf' else q,
               compile=compile_, threads=a.threads)
    pkg = {'hf': 'transformers', 'llamacpp': 'llama_cpp'}.get(engine)
    if pkg and importlib.util.find_spec(pkg) is None: return dict(row, error='not installed')
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    p = subprocess.run(row_command(key, hf_dir, gguf, ids, a), capture_output=True, text=True, env=env)
    try:
        if p.returncode: raise ValueError
        r = json.loads(p.stdout[p.stdout.index('{'):])
    except ValueError: return dict(row, error=_last_line(p.stderr or p.stdout))
    return dict(row, **{k: r.get(k) for k in ('load_s', 'prefill_tps', 'prefill_tps_std', 'decode_tps', 'decode_tps_std',
                                               'peak_rss_bytes', 'version')})

# -------------------------------------------------------------------------------------------------------------- table
def header(a) -> dict:
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), 'unknown') \
          if os.path.exists('/proc/cpuinfo') else 'unknown'
    def ver(p):
        try: return importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError: return 'not installed'
    return dict(threads=a.threads, cpu=cpu, torch=ver('torch'), transformers=ver('transformers'),
                llama_cpp_python=ver('llama_cpp_python'), n_prompt=a.n_prompt, n_gen=a.n_gen, repetitions=a.repetitions)

def _status(err) -> str: return err if err == 'not installed' else f"error: {err}"

def _ratio(x, ref): return f"{x / ref:.2f}x" if x and ref else '—'

def _engine_label(r):
    if r['engine'] == 'nanollama': return 'nanollama gguf' if r['row'].startswith('nano-gguf') else 'nanollama'
    return {'hf': 'HF transformers', 'llamacpp': 'llama.cpp'}[r['engine']]

def markdown(results, h) -> str:
    "All rows as a markdown table, with ratios to llama.cpp, to HF in the same compute dtype and to nanollama f32."
    by = {(r['model'], r['row']): r for r in results}
    get = lambda r, key, f: (by.get((r['model'], key)) or {}).get(f)
    head = ['model', 'engine', 'dtype/quant', 'compile', 'load s', f"pp{h['n_prompt']} tok/s", f"tg{h['n_gen']} tok/s",
            'tg vs llama.cpp', 'tg vs HF (same dtype)', 'peak RSS MiB', 'RSS vs nanollama f32']
    lines = [f"threads: {h['threads']} · CPU: {h['cpu']} · torch {h['torch']} · transformers {h['transformers']} · "
             f"llama_cpp_python {h['llama_cpp_python']} · repetitions: {h['repetitions']}", '',
             '| ' + ' | '.join(head) + ' |', '|' + '|'.join(['---'] * 4 + ['---:'] * 7) + '|']
    for r in results:
        q = {'float32': 'f32', 'bfloat16': 'bf16'}.get(r['dtype'], r['dtype'])
        dq = (f"{r['quant']} ({q})" if r['engine'] == 'nanollama' else r['quant']) if r['quant'] else r['dtype']
        cells = [r['model'], _engine_label(r), dq, 'yes' if r['compile'] else ('no' if r['engine'] == 'nanollama' else '—')]
        if r.get('error'):
            lines.append('| ' + ' | '.join(cells + [_status(r['error'])[:120].replace('|', '/')] + [''] * 6) + ' |'); continue
        hf_ref = 'hf-f32' if r['dtype'] == 'float32' else 'hf-bf16'
        rss, rss_ref = r['peak_rss_bytes'], get(r, 'nano-f32', 'peak_rss_bytes')
        cells += [f"{r['load_s']:.2f}", f"{r['prefill_tps']:.1f} ± {r['prefill_tps_std']:.1f}",
                  f"{r['decode_tps']:.1f} ± {r['decode_tps_std']:.1f}", _ratio(r['decode_tps'], get(r, 'llamacpp', 'decode_tps')),
                  _ratio(r['decode_tps'], get(r, hf_ref, 'decode_tps')) if r['dtype'] else '—',
                  f"{rss / 2**20:.0f}" if rss else 'n/a', _ratio(rss, rss_ref)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'

# --------------------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', choices=list(MODELS), default=list(MODELS), help="test models (default: both)")
    p.add_argument('--rows', nargs='+', default=['*'], metavar='ROW', help=f"rows to run (default: all): {', '.join(ROWS)}")
    p.add_argument('-p', '--n-prompt', type=int, default=512, help="prompt tokens for prefill (default: 512)")
    p.add_argument('-n', '--n-gen', type=int, default=128, help="greedy tokens to decode (default: 128)")
    p.add_argument('-r', '--repetitions', type=int, default=2, help="repetitions of each test (default: 2)")
    p.add_argument('--threads', type=int, default=os.cpu_count(), help="CPU threads for every engine (default: all cores)")
    p.add_argument('--json', default='bench/results.json', metavar='PATH', help="write results here (default: bench/results.json)")
    p.add_argument('--markdown', metavar='PATH', help="also write the table here")
    p.add_argument('--quick', action='store_true', help="smoke test: -p 32 -n 8 -r 1")
    p.add_argument('--_run', choices=['hf', 'llamacpp'], help=argparse.SUPPRESS)     # child mode: one runner
    p.add_argument('--model', help=argparse.SUPPRESS)
    p.add_argument('--dtype', help=argparse.SUPPRESS)
    p.add_argument('--ids', type=lambda s: [int(x) for x in s.split(',')], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick: a.n_prompt, a.n_gen, a.repetitions = 32, 8, 1
    return a

def main(argv=None):
    a = parse_args(argv)
    if a._run: return run_child(a)
    if bad := [pat for pat in a.rows if not fnmatch.filter(ROWS, pat)]: sys.exit(f"unknown --rows {bad}; rows: {', '.join(ROWS)}")
    keys = [k for k in ROWS if any(fnmatch.fnmatchcase(k, pat) for pat in a.rows)]
    results, t_start, n = [], time.perf_counter(), len(keys) * len(a.models)
    for model in a.models:
        hf_dir, gguf = model_files(model)
        ids = prompt_ids(hf_dir, a.n_prompt)
        for key in keys:
            print(f"[{len(results) + 1}/{n}] {model} {key} ...", end=' ', file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            results.append(run_row(key, model, hf_dir, gguf, ids, a))
            err, now = results[-1].get('error'), time.perf_counter()
            print(f"{_status(err) if err else 'ok'} ({now - t0:.0f} s, total {now - t_start:.0f} s)", file=sys.stderr, flush=True)
    h = header(a)
    table = markdown(results, h)
    print(table)
    if a.markdown: Path(a.markdown).write_text(table)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(dict(header=h, results=results), indent=1) + '\n')
    print(f"wrote {a.json}" + (f" and {a.markdown}" if a.markdown else ''), file=sys.stderr)

if __name__ == '__main__': main()
