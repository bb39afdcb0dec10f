"""Run every notebook in nbs/ as a test (what `nbdev_test` does), then print one summary line: `N passed, M failed`."""
import os, sys, time, argparse
# Notebooks run two at a time on a 2-core machine: one thread each. With more OpenMP threads than free cores, every
# small op waits for a descheduled thread (decode steps become ~500x slower).
os.environ.setdefault('OMP_NUM_THREADS', '1')
from pathlib import Path
from fastcore.parallel import parallel
from nbdev.test import test_nb
from nbdev.config import get_config

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
    res = parallel(test_nb, nbs, skip_flags=skip, force_flags=a.flags.split(), n_workers=a.n_workers,
                   basepath=cfg.config_path, do_print=False)
    failed = [nb for nb, (ok, _) in zip(nbs, res) if not ok]
    for nb, (ok, t) in sorted(zip(nbs, res), key=lambda o: -o[1][1]): print(f"{'ok  ' if ok else 'FAIL'} {t:7.1f}s  {nb.name}")
    print(f"total {time.time()-t0:.0f}s")
    if failed: print("failed notebooks: " + ' '.join(nb.name for nb in failed))
    print(f"{len(nbs)-len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
