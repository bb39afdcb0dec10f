"""Run every notebook in nbs/ as a test (what `nbdev_test` does), then print one summary line: `N passed, M failed`.

Each notebook runs in a process of its own, so one that crashes (a kernel that segfaults on this CPU) is reported as
a failure by name, with its signal, instead of taking the other notebooks down with it."""
import os, sys, time, argparse, subprocess, signal
# Notebooks run two at a time on a 2-core machine: one thread each. With more OpenMP threads than free cores, every
# small op waits for a descheduled thread (decode steps become ~500x slower).
os.environ.setdefault('OMP_NUM_THREADS', '1')
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from nbdev.config import get_config

RUN_ONE = """
import sys
from pathlib import Path
from nbdev.test import test_nb
ok, _ = test_nb(Path(sys.argv[1]), skip_flags=sys.argv[2].split(), force_flags=sys.argv[3].split(), basepath=sys.argv[4])
sys.exit(0 if ok else 1)
"""

def run_one(nb: Path, skip: list, force: list, basepath) -> tuple:
    "Test one notebook in a fresh process: (passed, seconds, why it failed or '')."
    t0 = time.time()
    p = subprocess.run([sys.executable, '-c', RUN_ONE, str(nb), ' '.join(skip), ' '.join(force), str(basepath)],
                       capture_output=True, text=True)
    if p.returncode == 0: return True, time.time() - t0, ''
    why = (f'killed by {signal.Signals(-p.returncode).name}' if p.returncode < 0 else f'exit {p.returncode}')
    sys.stderr.write(f'\n===== {nb.name}: {why}\n{p.stdout[-4000:]}{p.stderr[-8000:]}\n')
    return False, time.time() - t0, why

def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--flags', default='', help='space separated flags of cells to run too (e.g. "slow")')
    p.add_argument('--n_workers', type=int, default=2)
    p.add_argument('paths', nargs='*', help='notebooks to test (default: all of nbs/)')
    a = p.parse_args()
    cfg = get_config()
    nbs = [Path(x) for x in a.paths] or sorted(p for p in cfg.nbs_path.glob('*.ipynb') if not p.name.startswith('_'))
    skip = [f for f in cfg.tst_flags.split() if f not in a.flags.split()]
    t0 = time.time()
    with ThreadPoolExecutor(a.n_workers) as ex:
        res = list(ex.map(lambda nb: run_one(nb, skip, a.flags.split(), cfg.config_path), nbs))
    failed = [nb for nb, (ok, _, _) in zip(nbs, res) if not ok]
    for nb, (ok, t, why) in sorted(zip(nbs, res), key=lambda o: -o[1][1]):
        print(f"{'ok  ' if ok else 'FAIL'} {t:7.1f}s  {nb.name}{'  (' + why + ')' if why else ''}")
    print(f"total {time.time()-t0:.0f}s")
    if failed: print("failed notebooks: " + ' '.join(nb.name for nb in failed))
    print(f"{len(nbs)-len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
