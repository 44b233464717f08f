"""Inference-engine speed (issue: inference engine).

1. A whole ``xsbi run`` (count-window restriction, 20,000 training spectra, single-round NPE,
   20,000 posterior samples, 200 test spectra, plots) on the 2,000-count NICER reference set-up.
2. Amortized sampling: 20,000 posterior samples per spectrum with the trained network, timed on
   ``--spectra`` spectra and extrapolated to 500.
3. For the same spectrum, wall time to a converged posterior of the likelihood baselines in this
   run: C-stat fit, emcee (autocorrelation-time stopping), UltraNest (its default stopping rules),
   each with its effective sample size, against NPE's training + amortized per-spectrum cost.
Run: ``python benchmarks/npe_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import xsbi
from xsbi.inference import AmortizedPosterior
from xsbi.pipeline import run_analysis
from xsbi.record import versions

NICER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nicer"
PHA = "Reference_pha_tbabs_powerlaw_2000counts_groupconstant_5.pha"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spectra", type=int, default=25, help="spectra timed for amortized sampling (default %(default)s)")
    ap.add_argument("--simulations", type=int, default=20000)
    ap.add_argument("--density-estimator", default="maf")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (NICER / PHA).is_file():
        sys.exit(f"shared NICER data not found at {NICER}")
    torch.set_num_threads(2)
    config = {
        "data": {"spectrum": str(NICER / PHA), "energy": [0.3, 10.0]},
        "model": "tbabs*powerlaw",
        "priors": {"tbabs.nH": {"loguniform": [0.1, 0.3]}, "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
                   "powerlaw.norm": {"loguniform": [0.01, 100]}},
        "inference": {"simulations": args.simulations, "density_estimator": args.density_estimator},
        "seed": 0,
    }
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, torch threads 2",
           "versions": versions()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = run_analysis(config, tmp, progress=False)
        out["xsbi_run_seconds"] = time.perf_counter() - t0
        out["xsbi_run_stages"] = summary["timings_s"]
        post = AmortizedPosterior.load(Path(tmp) / "network.pt")
        spec = xsbi.load_spectrum(NICER / PHA).notice(0.3, 10.0)
        sim = xsbi.Simulator(xsbi.Model("tbabs*powerlaw"), spec)
        theta = np.column_stack([np.full(args.spectra, 0.2), np.linspace(1.2, 2.2, args.spectra), np.full(args.spectra, 1.0)])
        xs = sim.sample(theta, seed=1)
        t0 = time.perf_counter()
        post.sample_batched(xs, 20000, seed=0)
        dt = time.perf_counter() - t0
        out["amortized_seconds_per_spectrum_20000_samples"] = dt / args.spectra
        out["amortized_500_spectra_seconds_extrapolated"] = 500 * dt / args.spectra
        out["posterior_samples_per_second"] = 20000 * args.spectra / dt

        from xsbi.likelihood import PoissonLikelihood, fit_cstat, run_mcmc

        prior = xsbi.JointPrior(xsbi.Model("tbabs*powerlaw"), config["priors"])
        lik = PoissonLikelihood(spec, prior.model, prior)
        t0 = time.perf_counter()
        fit_cstat(lik, n_starts=5, seed=0)
        out["cstat_fit_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = run_mcmc(lik, seed=0, progress=False)
        out["emcee_seconds"] = time.perf_counter() - t0
        out["emcee_effective_samples"] = float(np.min(res.ess))
        from xsbi.likelihood import run_nested

        t0 = time.perf_counter()
        nres = run_nested(lik, seed=0, progress=False)
        out["ultranest_seconds"] = time.perf_counter() - t0
        out["ultranest_effective_samples"] = float(nres.record()["ess"])
        out["ultranest_likelihood_calls"] = int(nres.ncall)
        per = out["amortized_seconds_per_spectrum_20000_samples"]
        out["npe_seconds_per_spectrum_amortized_20000_samples"] = per
        out["npe_break_even_spectra_vs_emcee"] = out["xsbi_run_stages"]["train"] / max(out["emcee_seconds"] - per, 1e-9)
    for k, v in out.items():
        if not isinstance(v, dict):
            print(f"{k:<48s} {v:,.2f}" if isinstance(v, float) else f"{k:<48s} {v}")
    print("stages:", ", ".join(f"{k} {v:.1f}s" for k, v in out["xsbi_run_stages"].items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
