"""Batch inference throughput and memory (issue: real data, amortized inference over many spectra).

Floor: 200 spectra per second with 1,000 posterior samples each on 2 CPU cores; memory flat for
100,000 spectra (streamed).

1. A default-size network (MAF, 5 transforms x 50 hidden units) for the built-in NICER-like set-up
   (exposure 1.25 s, ``tbabs*powerlaw``, 194 bins over 0.3-10 keV, response read back from the
   OGIP files as real data would be), trained briefly (a speed benchmark: ``--simulations``,
   ``--max-epochs``; prior norm log-uniform in [0.3, 3], i.e. ~600-6,000 counts), or ``--network``.
2. Throughput, ``--samples`` (1,000) posterior draws per spectrum, best fit among them (wall
   clock, and CPU time per spectrum of the process and its worker processes, steadier on a shared
   machine: 2 idle cores give at most 2,000 / cpu_ms_per_spectrum spectra/s):
   (a) from disk: ``--files`` PHA files sharing one RMF/ARF through ``xsbi.batch.run_batch``
       (CSV and FITS written), after a short warm-up run, with worker processes (the default on
       Linux) and, as the baseline, with threads; then with ``--importance`` (draws reweighted by
       the exact likelihood; its efficiency, median and 10th percentile); the rate of reading
       alone (load, group, notice, compatibility check) is given too;
   (b) in memory: ``xsbi.batch.run_batch_counts`` on ``--spectra`` simulated spectra.
3. Memory: peak resident memory (ru_maxrss, of this process and of the largest worker) after a
   warm-up and after streaming each of
   ``--memory-runs`` in-memory spectra (cycled from a pool of 2,000) to a CSV + FITS table; flat
   means the peak does not grow with the number of spectra.

Run: ``python benchmarks/batch_throughput.py [--threads 2] [--memory-runs 2000 20000 100000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import xsbi
import xsbi.batch as batch
from xsbi.batch import ResponseCache, _Engine, run_batch, run_batch_counts
from xsbi.data.writer import write_arf, write_pha, write_rmf
from xsbi.inference import AmortizedPosterior
from xsbi.inference.npe import NPE
from xsbi.instruments import nicer_like_spectrum
from xsbi.record import versions

PRIORS = {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
          "powerlaw.norm": {"loguniform": [0.3, 3.0]}}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def cpu_s() -> float:
    """CPU time of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def worker_rss_mib() -> float:
    """Peak resident memory of the largest finished worker process (0 when none ran)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--network", type=Path, help="a saved network for this set-up (skips training)")
    ap.add_argument("--simulations", type=int, default=10_000)
    ap.add_argument("--max-epochs", type=int, default=20)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--spectra", type=int, default=2000)
    ap.add_argument("--memory-runs", type=int, nargs="*", default=[2000, 20000])
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads = batch workers, processes on Linux (default %(default)s)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, torch threads {args.threads}",
           "load_average": os.getloadavg(), "samples": args.samples, "batch_size": args.batch_size,
           "versions": {k: versions().get(k) for k in ("python", "xsbi", "numpy", "torch", "sbi")}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = nicer_like_spectrum(exposure=1.25)
        write_rmf(base.rmf, tmp / "nicer.rmf")
        write_arf(base.arf, tmp / "nicer.arf")
        model = xsbi.Model("tbabs*powerlaw")
        prior = xsbi.JointPrior(model, PRIORS)
        base_sim = xsbi.Simulator(model, base)
        truths = prior.sample(max(args.files, 1), seed=10)
        counts = base_sim.sample(truths, seed=11).astype(np.int64)
        files = [write_pha(base.with_counts(c), tmp / f"obs_{i:05d}.pha", respfile=tmp / "nicer.rmf",
                           ancrfile=tmp / "nicer.arf") for i, c in enumerate(counts)]
        spec = xsbi.load_spectrum(files[0]).notice(0.3, 10.0)
        assert spec.n_bins == 194, spec.n_bins
        sim = xsbi.Simulator(model, spec)

        if args.network:
            post = AmortizedPosterior.load(args.network)
            out["network"] = str(args.network)
        else:
            t0 = time.perf_counter()
            theta = prior.sample(args.simulations, seed=1)
            post = NPE(model, prior, spec).append_simulations(theta, sim.sample(theta, seed=2)).train(
                seed=0, progress=False, max_epochs=args.max_epochs)
            out["training"] = {"simulations": args.simulations, "epochs": post.meta["training"]["epochs"],
                               "seconds": round(time.perf_counter() - t0, 1)}
        post.check_compatible(spec)
        out["network_build"] = post.build

        # (a) from disk: worker processes (the default on Linux), and threads as a baseline
        run_batch(post, files[:32], tmp / "warm", n_samples=args.samples, progress=False, batch_size=args.batch_size)
        t0, c0 = time.perf_counter(), cpu_s()
        r = run_batch(post, files, tmp / "disk", n_samples=args.samples, progress=False, batch_size=args.batch_size)
        dt, dc = time.perf_counter() - t0, cpu_s() - c0
        out["disk"] = {"files": len(files), "ok": r.ok, "seconds": round(dt, 2),
                       "spectra_per_s": round(len(files) / dt, 1), "workers": "processes" if
                       batch._use_processes(torch.get_num_threads()) else "threads",
                       "cpu_ms_per_spectrum": round(dc / len(files) * 1e3, 2),
                       "response_loads": r.response_loads}
        real = batch._use_processes
        batch._use_processes = lambda workers: False
        try:
            t0 = time.perf_counter()
            r = run_batch(post, files, tmp / "disk_threads", n_samples=args.samples, progress=False,
                          batch_size=args.batch_size)
            dt_threads = time.perf_counter() - t0
        finally:
            batch._use_processes = real
        out["disk"]["threads_spectra_per_s"] = round(len(files) / dt_threads, 1)
        out["disk"]["speed-up_processes_over_threads"] = round(dt_threads / dt, 2)
        # with --importance: the draws reweighted by the exact likelihood
        t0 = time.perf_counter()
        r = run_batch(post, files, tmp / "disk_importance", n_samples=args.samples, progress=False,
                      batch_size=args.batch_size, importance=True)
        eff = np.array([row[-1] for row in _csv_rows(tmp / "disk_importance.csv")], dtype=float)
        out["disk"]["importance_spectra_per_s"] = round(len(files) / (time.perf_counter() - t0), 1)
        out["disk"]["importance_efficiency_median_p10"] = [round(float(np.median(eff)), 3),
                                                           round(float(np.percentile(eff, 10)), 3)]
        engine, cache = _Engine(post, args.samples, 0), ResponseCache()
        t0, c0 = time.perf_counter(), cpu_s()
        for i, f in enumerate(files):
            engine.item_from_file(i, f, cache)
        out["disk"]["read_only_spectra_per_s"] = round(len(files) / (time.perf_counter() - t0), 1)
        out["disk"]["read_only_cpu_ms_per_spectrum"] = round((cpu_s() - c0) / len(files) * 1e3, 2)

        # (b) in memory
        pool = sim.sample(prior.sample(max(args.spectra, 2000), seed=3), seed=4).astype(np.int64)
        run_batch_counts(post, pool[:64], spec, n_samples=args.samples, batch_size=args.batch_size)
        t0, c0 = time.perf_counter(), cpu_s()
        r = run_batch_counts(post, pool[: args.spectra], spec, out=tmp / "memory", n_samples=args.samples,
                             batch_size=args.batch_size)
        dt, dc = time.perf_counter() - t0, cpu_s() - c0
        out["memory"] = {"spectra": args.spectra, "ok": r.ok, "seconds": round(dt, 2),
                         "spectra_per_s": round(args.spectra / dt, 1),
                         "cpu_ms_per_spectrum": round(dc / args.spectra * 1e3, 2)}

        # memory: streamed, never all held
        out["rss"] = {"after_setup_MiB": round(rss_mib(), 1), "worker_peak_after_setup_MiB": round(worker_rss_mib(), 1)}
        for n in args.memory_runs:
            stream = (pool[i % len(pool)] for i in range(n))
            t0 = time.perf_counter()
            r = run_batch_counts(post, stream, spec, out=tmp / f"stream_{n}", n_samples=args.samples,
                                 batch_size=args.batch_size)
            dt = time.perf_counter() - t0
            size = (tmp / f"stream_{n}.csv").stat().st_size + (tmp / f"stream_{n}.fits").stat().st_size
            out["rss"][f"peak_after_{n}_MiB"] = round(rss_mib(), 1)
            out["rss"][f"worker_peak_after_{n}_MiB"] = round(worker_rss_mib(), 1)
            out["rss"][f"rate_{n}_spectra_per_s"] = round(n / dt, 1)
            out["rss"][f"table_{n}_MiB"] = round(size / 2**20, 1)
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
