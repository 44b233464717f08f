"""The embedded demo: a NICER-like tbabs*powerlaw spectrum simulated, timed and plotted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .instruments import nicer_like_spectrum
from .models import Model
from .priors import JointPrior
from .record import Timer, versions, write_json
from .simulate import Simulator
from .stats import cstat

TRUTH = {"tbabs.nH": 0.2, "powerlaw.PhoIndex": 1.7, "powerlaw.norm": 1.0}
PRIORS = {
    "tbabs.nH": {"loguniform": [0.1, 0.3]},
    "powerlaw.PhoIndex": {"uniform": [0.5, 2.5]},
    "powerlaw.norm": {"loguniform": [0.01, 100.0]},
}
#: seconds giving ~2,000 counts in 0.3-10 keV for TRUTH on the built-in response
EXPOSURE = 1.25


def run_demo(out: Path, seed: int = 0, n_sims: int = 100_000) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    with timer("setup"):
        spec = nicer_like_spectrum(exposure=EXPOSURE)
        model = Model("tbabs*powerlaw")
        prior = JointPrior(model, PRIORS)
        sim = Simulator(model, spec)
    truth = np.array([[TRUTH[n] for n in model.parameter_names]])
    with timer("observe"):
        mu, counts = sim.simulate(truth, seed=seed)
    obs = spec.with_counts(counts[0].astype(np.int64))

    theta = prior.sample(n_sims, seed=seed + 1)
    chunk = sim.chunk_size * 4
    with timer("prior_simulations"):
        for start in tqdm(range(0, n_sims, chunk), desc="simulating prior spectra", unit="chunk"):
            x = sim.sample(theta[start : start + chunk], seed=seed + 2 + start)
    rate = n_sims / timer.seconds["prior_simulations"]

    c = float(cstat(obs.counts, mu[0]))
    centre = obs.energy_bounds.mean(1)
    width = np.diff(obs.energy_bounds, axis=1)[:, 0]
    fig, (ax, axr) = plt.subplots(2, 1, sharex=True, figsize=(7, 6), gridspec_kw={"height_ratios": [3, 1]})
    ax.errorbar(centre, obs.counts / width / spec.exposure, yerr=np.sqrt(np.maximum(obs.counts, 1)) / width / spec.exposure,
                fmt=".", ms=3, label=f"simulated observation ({int(obs.counts.sum())} counts)")
    ax.step(centre, mu[0] / width / spec.exposure, where="mid", color="C3", label="tbabs*powerlaw (truth)")
    ax.set(xscale="log", yscale="log", ylabel="counts s$^{-1}$ keV$^{-1}$",
           title=f"xsbi demo: NICER-like instrument, C-stat = {c:.1f} for {obs.n_bins} bins")
    ax.legend()
    axr.axhline(0, color="k", lw=0.5)
    axr.plot(centre, (obs.counts - mu[0]) / np.sqrt(mu[0]), ".", ms=3)
    axr.set(xlabel="energy (keV)", ylabel="(data-model)/$\\sigma$")
    fig.tight_layout()
    fig.savefig(out / "spectrum.png", dpi=120)
    plt.close(fig)

    record = {
        "model": model.record(),
        "truth": TRUTH,
        "priors": prior.record(),
        "instrument": "built-in NICER-like (xsbi.instruments.nicer_like)",
        "exposure_s": spec.exposure,
        "n_bins": obs.n_bins,
        "observed_counts": int(obs.counts.sum()),
        "cstat_truth": c,
        "seed": seed,
        "simulator": sim.record(),
        "prior_simulations": n_sims,
        "spectra_per_second": rate,
        "last_batch_counts_median": float(np.median(x.sum(1))),
        "timings_s": timer.seconds,
        "versions": versions(),
    }
    write_json(out / "record.json", record)
    print(f"simulated observation: {record['observed_counts']} counts in {obs.n_bins} bins, C-stat(truth) = {c:.1f}")
    print(f"simulator: {rate:,.0f} spectra/s ({n_sims} prior draws)")
    print(f"wrote {out / 'spectrum.png'} and {out / 'record.json'}")
    return record
