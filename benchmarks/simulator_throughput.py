"""Simulator throughput on the NICER set-up (issue: core simulator benchmark).

tbabs*powerlaw, real NICER ARF (3451 energies), Gaussian-approximation RMF, grouped by 5
channels, noticed 0.3-10 keV (194 bins), parameters drawn from the reference priors.  Prints
spectra per second for xsbi (expected counts, and with Poisson draws) and for a plain dense numpy
implementation measured in the same run, and the ratio.  Run: ``python benchmarks/simulator_throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import xsbi
from xsbi.models.xsect import cross_section
from xsbi.record import versions

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nicer"
PHA = "Reference_pha_tbabs_powerlaw_2000counts_groupconstant_5.pha"
PRIORS = {
    "tbabs.nH": {"loguniform": [0.1, 0.3]},
    "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
    "powerlaw.norm": {"loguniform": [0.01, 100.0]},
}


def numpy_dense(spec, theta, seed):
    """The straightforward implementation: float64, all response energies, np.power, dense fold."""
    lo, hi = spec.energ_lo, spec.energ_hi
    sigma = cross_section("tbabs").sigma(0.5 * (lo + hi))
    response = spec.response_matrix() * spec.exposure
    rng = np.random.default_rng(seed)
    out = np.empty((len(theta), spec.n_bins))
    for s in range(0, len(theta), 1000):
        nh, gamma, norm = theta[s : s + 1000].T
        a = (1.0 - gamma)[:, None]
        flux = norm[:, None] * (np.power(hi, a) - np.power(lo, a)) / a * np.exp(-nh[:, None] * sigma)
        out[s : s + 1000] = rng.poisson(flux @ response)
    return out


def rate(fn, n, sync=lambda: None, repeats=3):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="spectra per xsbi timing (default %(default)s)")
    ap.add_argument("--n-numpy", type=int, default=20_000, help="spectra for the numpy baseline (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default %(default)s)")
    ap.add_argument("--json", type=Path, help="write the figures to this JSON file")
    ap.add_argument("--data", type=Path, default=SHARED, help="folder holding the NICER PHA, RMF and ARF (default: %(default)s)")
    args = ap.parse_args(argv)
    if not (args.data / PHA).is_file():
        sys.exit(f"NICER reference data not found in {args.data}; this benchmark needs ../shared/data/nicer")
    torch.set_num_threads(args.threads)

    spec = xsbi.load_spectrum(args.data / PHA).notice(0.3, 10.0)
    model = xsbi.Model("tbabs*powerlaw")
    prior = xsbi.JointPrior(model, PRIORS)
    theta = prior.sample(max(args.n, args.n_numpy), seed=0)
    results = {
        "setup": f"tbabs*powerlaw, NICER ARF ({len(spec.energ_lo)} energies), grouped by 5, 0.3-10 keV, {spec.n_bins} bins",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch threads {args.threads}",
        "versions": versions(),
    }

    sim = xsbi.Simulator(model, spec)
    th = torch.as_tensor(theta[: args.n], dtype=torch.float32)
    sim.expected_counts(th[:5000])  # warm-up
    results["cpu_expected_counts_per_s"] = rate(lambda: sim.expected_counts(th), args.n)
    results["cpu_poisson_spectra_per_s"] = rate(lambda: sim.sample(th, seed=1), args.n)
    results["numpy_dense_spectra_per_s"] = rate(lambda: numpy_dense(spec, theta[: args.n_numpy], 1), args.n_numpy, repeats=1)
    results["speedup_vs_numpy"] = results["cpu_poisson_spectra_per_s"] / results["numpy_dense_spectra_per_s"]
    results["simulator"] = sim.record()

    if torch.cuda.is_available():
        n_gpu = 1_000_000
        gsim = xsbi.Simulator(model, spec, device="cuda")
        gth = torch.as_tensor(prior.sample(n_gpu, seed=2), dtype=torch.float32, device="cuda")
        sync = torch.cuda.synchronize
        gsim.sample(gth[:10000], seed=0)
        results["gpu"] = torch.cuda.get_device_name()
        results["gpu_expected_counts_per_s"] = rate(lambda: gsim.expected_counts(gth), n_gpu, sync)
        results["gpu_poisson_spectra_per_s"] = rate(lambda: gsim.sample(gth, seed=1), n_gpu, sync)
        results["gpu_simulator"] = gsim.record()

    width = max(len(k) for k in results)
    for k, v in results.items():
        if isinstance(v, float):
            print(f"{k:<{width}}  {v:>14,.1f}")
        elif not isinstance(v, dict):
            print(f"{k:<{width}}  {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
