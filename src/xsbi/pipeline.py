"""``xsbi run``: a whole analysis from a configuration, with its record and plots.

Stages: load the data -> build model and priors -> restrict the prior -> infer (NPE, multi-round
NPE, or a likelihood method) -> summarise, test, plot, record.  Every stage is timed and seeded;
``summary.json`` (see docs/outputs.md) holds the numbers, ``posterior_samples.fits`` the samples.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig, load_config
from .data import load_spectrum
from .data.preparation import prepare_spectrum, preparation_record
from .inference.result import PosteriorResult
from .record import Timer, versions, write_json
from .simulate import Simulator

LIKELIHOOD_METHODS = ("cstat", "mcmc", "nested")


def load_observation(cfg: RunConfig):
    d = cfg.data
    spec = load_spectrum(d.spectrum, rmf=d.rmf, arf=d.arf, background=d.background)
    # the same record goes into network.pt, so that `xsbi batch` prepares new files alike
    return prepare_spectrum(spec, preparation_record(d.group, d.energy))


def write_samples(path: Path, samples: np.ndarray, names: list[str], method: str) -> Path:
    """A FITS binary table, one column per parameter (``component.parameter``)."""
    from astropy.io import fits

    cols = [fits.Column(name=n, format="D", array=samples[:, i]) for i, n in enumerate(names)]
    hdu = fits.BinTableHDU.from_columns(cols, name="POSTERIOR")
    hdu.header["METHOD"] = (method, "inference method")
    hdu.header["CREATOR"] = f"xsbi {versions().get('xsbi', '')}"
    hdu.writeto(path, overwrite=True)
    return path


def write_test_set(path: Path, theta: np.ndarray, counts: np.ndarray, names: list[str], spec, seeds: dict,
                   restriction: str) -> Path:
    """Held-out spectra for ``xsbi validate``: FITS table ``TESTSET``, one float64 column per
    parameter (physical units) and ``COUNTS`` (one n_bins vector per row); header: seeds, prior."""
    from astropy.io import fits

    from .inference.posterior import spectrum_identity

    theta, counts = np.asarray(theta, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    cols = [fits.Column(name=n, format="D", array=theta[:, i]) for i, n in enumerate(names)]
    cols.append(fits.Column(name="COUNTS", format=f"{counts.shape[1]}D", array=counts))
    hdu = fits.BinTableHDU.from_columns(cols, name="TESTSET")
    ident = spectrum_identity(spec)
    h = hdu.header
    h["PRIOR"] = ("restricted", "parameters drawn from the restricted prior")
    h["RESTRICT"] = (restriction, "restriction method")
    h["SEED"] = (int(seeds["run"]), "seed of the run")
    h["THSEED"] = (int(seeds["theta"]), "seed of the parameter draws")
    h["XSEED"] = (int(seeds["counts"]), "seed of the Poisson draws")
    h["NBINS"] = (int(counts.shape[1]), "grouped, noticed bins per spectrum")
    h["NPARAM"] = (len(names), "free parameters")
    h["EXPOSURE"] = (ident["exposure"], "s")
    h["RESPHASH"] = ident["response_hash"]  # sha256 of the response (no room for a comment)
    h["BINSHASH"] = ident["bins_hash"]  # sha256 of the bin energies
    h["CREATOR"] = f"xsbi {versions().get('xsbi', '')}"
    hdu.writeto(path, overwrite=True)
    return path


def _restrict(cfg, spec, model, prior, sim, space, progress, x_obs, background=None):
    from .inference import restriction as R
    from .inference.npe import NPE

    rc, inf = cfg.restriction, cfg.inference
    if rc.method == "none":
        return R.unrestricted(space)
    if rc.method == "counts":
        crit = R.CountsWindow(*rc.counts_range(x_obs.sum()))
    elif rc.method == "cstat":
        crit = R.CstatFraction(x_obs, rc.fraction, space.dim)
    else:
        small = dict(density_estimator=inf.density_estimator, hidden_features=max(20, inf.hidden_features // 2),
                     num_transforms=max(2, inf.num_transforms // 2), preprocessing=inf.preprocessing)
        return R.restrict_with_coarse_npe(lambda: NPE(model, prior, spec, background=background, **small), sim, space, x_obs,
                                          simulations=rc.coarse_simulations, quantile=rc.coarse_quantile,
                                          seed=cfg.seed + 1, progress=progress)
    return R.restrict_with_classifier(sim, space, crit, rounds=rc.rounds, simulations=rc.simulations,
                                      stop_fraction=rc.stop_fraction, seed=cfg.seed + 1, progress=progress)


def run_analysis(config, out, method: str | None = None, progress: bool = True, overrides=None) -> dict:
    """Run the analysis a configuration (file, mapping or RunConfig) describes; write to ``out``."""
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides=overrides)
    if method:
        cfg = load_config(cfg.to_dict(), overrides={"inference.method": method})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inf = cfg.inference
    timer = Timer()
    torch.manual_seed(cfg.seed)
    summary: dict = {"method": inf.method, "seed": cfg.seed}

    with timer("load"):
        spec = load_observation(cfg)
        prior = cfg.build_prior()
        model = prior.model
        sim = Simulator(model, spec, device=inf.device)
    summary["spectrum"] = {"path": str(cfg.data.spectrum), "n_bins": int(spec.n_bins),
                           "counts": int(spec.counts.sum()), "exposure_s": float(spec.exposure),
                           "energy_range_keV": [float(spec.energy_bounds[0, 0]), float(spec.energy_bounds[-1, 1])],
                           "background": spec.backfile is not None and spec.background_counts is not None}
    summary["model"] = model.record()
    summary["priors"] = prior.record()
    plots = {}
    exposure_range = inf.exposure if inf.method == "npe" else None
    if exposure_range is not None:
        lo, hi = exposure_range
        t_obs = float(spec.exposure)
        if not lo * (1 - 1e-6) <= t_obs <= hi * (1 + 1e-6):
            from .config import ConfigError

            raise ConfigError([("inference.exposure", f"the observation's exposure {t_obs:g} s is outside "
                                f"[{lo:g}, {hi:g}] s; widen the range to include it")])

    if inf.method in ("npe", "snpe"):
        from .inference.space import ParameterSpace

        space = ParameterSpace(prior)
        # with a background spectrum the simulator adds background counts to the source region,
        # its rates drawn from their posterior given the background spectrum, so the network's
        # posterior marginalises them (xsbi.simulate.background)
        background = None
        sim_obs = sim
        if spec.background_counts is not None:
            from .simulate.background import PoissonBackground, SourceAndBackground

            background = PoissonBackground(spec)
            sim_obs = SourceAndBackground(sim, background)
            summary["background_model"] = background.record()
        level_range = inf.background_level if inf.method == "npe" else None
        if level_range is not None and background is None:
            from .config import ConfigError

            raise ConfigError([("inference.background_level", "needs a background spectrum: the observation has "
                                "none (set data.background or BACKFILE)")])
        x_obs = np.asarray(spec.counts, dtype=np.float64)
        with timer("restriction"):
            restricted = _restrict(cfg, spec, model, prior, sim_obs, space, progress, x_obs, background)
        summary["restriction"] = restricted.record()
        with timer("prior_predictive"):
            theta_pp = restricted.sample(1000, seed=cfg.seed + 2)
            x_pp = sim_obs.sample(theta_pp, seed=cfg.seed + 3)
            from .report import prior_predictive_coverage

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                coverage = prior_predictive_coverage(spec, x_pp)
            summary["prior_predictive"] = {"covered": bool(coverage["covered"]),
                                           "total_quantile": float(coverage["total_quantile"]),
                                           "bins_inside_99": float(coverage["levels"][0.99]["bins_inside"]),
                                           "warnings": [str(w.message) for w in caught]}
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=2)
        npe_kwargs = dict(density_estimator=inf.density_estimator, hidden_features=inf.hidden_features,
                          num_transforms=inf.num_transforms, preprocessing=inf.preprocessing, pca=inf.pca,
                          device=inf.device, ensemble=inf.ensemble, background=background)
        train_kwargs = dict(training_batch_size=inf.training_batch_size, learning_rate=inf.learning_rate,
                            stop_after_epochs=inf.stop_after_epochs, max_epochs=inf.max_epochs)
        if inf.method == "npe":
            from .inference.npe import NPE

            t_train = t_all = l_train = l_all = None
            with timer("simulate"):
                theta = restricted.sample(inf.simulations + inf.test_spectra, seed=cfg.seed + 4)
                # each training spectrum its own exposure and background level; the test spectra
                # keep the observation's (level 1), those `xsbi validate` reads them at
                if exposure_range is not None:
                    from .simulate import sample_exposures

                    t_train = sample_exposures(inf.simulations, *exposure_range, seed=cfg.seed + 12)
                    t_all = np.concatenate([t_train, np.full(inf.test_spectra, float(spec.exposure))])
                if level_range is not None:
                    from .simulate import sample_background_levels

                    l_train = sample_background_levels(inf.simulations, *level_range, seed=cfg.seed + 13)
                    l_all = np.concatenate([l_train, np.ones(inf.test_spectra)])
                # only SourceAndBackground takes levels (a background-free Simulator has none)
                levels = {} if l_all is None else {"background_level": l_all}
                x = sim_obs.sample(theta, seed=cfg.seed + 5, exposure=t_all, **levels)
            theta_test, x_test = theta[inf.simulations:], x[inf.simulations:]
            if len(theta_test):
                write_test_set(out / "test_set.fits", theta_test, x_test, list(prior.names), spec,
                               {"run": cfg.seed, "theta": cfg.seed + 4, "counts": cfg.seed + 5}, restricted.method)
            with timer("train"):
                posterior = NPE(model, prior, spec, exposure_range=exposure_range, background_level=level_range,
                                **npe_kwargs).append_simulations(
                    theta[: inf.simulations], x[: inf.simulations], exposure=t_train, background_level=l_train).train(
                    seed=cfg.seed + 6, progress=progress, **train_kwargs)
            posterior.meta["preparation"] = preparation_record(cfg.data.group, cfg.data.energy)
            posterior.save(out / "network.pt")
        else:
            from .inference.multiround import train_multiround

            with timer("train"):
                posterior = train_multiround(model, prior, spec, sim_obs, x_obs, rounds=inf.rounds,
                                             simulations_per_round=inf.simulations_per_round,
                                             proposal=restricted.distribution, seed=cfg.seed + 6, progress=progress,
                                             npe_kwargs=npe_kwargs, train_kwargs=train_kwargs)
            theta_test = x_test = None
        summary["training"] = posterior.meta["training"]
        if posterior.meta.get("exposure"):
            summary["exposure_conditioning"] = {**posterior.meta["exposure"], "seed": cfg.seed + 12}
        if posterior.meta.get("background_level"):
            # the range and the feature's standardisation; the training background is in background_model
            level = {k: v for k, v in posterior.meta["background_level"].items() if k not in ("counts", "ratio")}
            summary["background_level_conditioning"] = {**level, "seed": cfg.seed + 13}
        with timer("sample"):
            # the observation's own exposure, which an exposure-conditioned network reads; the
            # importance weights and the best fit use its likelihood (PoissonLikelihood(spec))
            samples = posterior.sample(x_obs, inf.posterior_samples, seed=cfg.seed + 7, exposure=float(spec.exposure))
        if inf.importance_sampling:
            from .inference.importance import importance_resample
            from .inference.result import summarize
            from .likelihood import PoissonLikelihood

            with timer("importance_sampling"):
                summary["npe_parameters"] = summarize(samples, prior.names)
                res = importance_resample(posterior, PoissonLikelihood(spec, model, prior), x_obs,
                                          inf.posterior_samples, seed=cfg.seed + 11)
                samples = res.samples
                summary["importance_sampling"] = res.record()
        if theta_test is not None and len(theta_test):
            with timer("test_set"):
                # at most 200,000 draws in all (1,000 per spectrum up to 200 spectra, 400 for 500):
                # plenty for medians and 68% intervals, and the stage stays as cheap as it was
                n_draws = int(max(200, min(1000, 200_000 // len(theta_test))))
                draws = posterior.sample_batched(x_test, n_draws, seed=cfg.seed + 8)
                q16, med, q84 = np.percentile(draws, [15.87, 50, 84.13], axis=1)
                from .report import plot_regression, regression_summary

                log_names = [n for n, lg in zip(space.names, space.log) if lg]
                reg = regression_summary(theta_test, med, names=space.names, log_params=log_names)
                if cfg.plots:
                    plot_regression(theta_test, med, q16, q84, space.names, out / "test_regression.png", log_params=log_names)
                    plots["test_regression"] = "test_regression.png"
                summary["test_set"] = {"spectra": int(len(theta_test)), "draws": n_draws, "file": "test_set.fits",
                                       "regression": reg}
        if cfg.plots:
            from .report import plot_prior_predictive, plot_prior_vs_restricted

            log_names = [n for n, lg in zip(space.names, space.log) if lg]
            plot_prior_vs_restricted(prior.sample(5000, seed=cfg.seed + 9), restricted.sample(5000, seed=cfg.seed + 10),
                                     space.names, out / "prior_restricted.png", log_params=log_names)
            plot_prior_predictive(spec, x_pp, out / "prior_predictive.png")
            plots.update(prior_restricted="prior_restricted.png", prior_predictive="prior_predictive.png")
        method_label = posterior.meta["training"]["method"] + (
            " + importance sampling on the exact likelihood" if inf.importance_sampling else "")
    elif inf.method in LIKELIHOOD_METHODS:
        samples, method_label = _likelihood_method(cfg, spec, prior, summary, timer, progress)
    else:  # validated by the config already
        raise ValueError(inf.method)

    with timer("summarise"):
        from .likelihood import PoissonLikelihood

        # the best fit: the lowest-statistic sample, then a local minimisation from it
        result = PosteriorResult.from_samples(samples, prior.names, spec, model, method_label,
                                              likelihood=PoissonLikelihood(spec, model, prior))
    summary["parameters"] = result.summary
    summary["best_fit"] = {"parameters": result.best_fit, **result.fit}
    write_samples(out / "posterior_samples.fits", result.samples, result.names, method_label)
    if cfg.plots:
        with timer("plots"):
            _plots(out, spec, model, prior, result, plots)
    summary["plots"] = plots
    summary["timings_s"] = timer.seconds
    summary["config"] = cfg.to_dict()
    summary["versions"] = versions()
    write_json(out / "summary.json", summary)
    return summary


def _likelihood_method(cfg, spec, prior, summary, timer, progress):
    from .likelihood import PoissonLikelihood, fit_cstat, run_mcmc, run_nested

    lik = PoissonLikelihood(spec, prior.model, prior)
    inf = cfg.inference
    if inf.method == "cstat":
        with timer("fit"):
            fit = fit_cstat(lik, n_starts=inf.fit.starts, seed=cfg.seed)
        summary["fit"] = fit.record()
        # a Gaussian approximation of the likelihood around the best fit stands in for samples
        rng = np.random.default_rng(cfg.seed)
        cov = np.nan_to_num(fit.covariance)
        draws = rng.multivariate_normal(fit.theta, cov, size=inf.posterior_samples, method="eigh")
        draws = draws[np.isfinite(prior.log_prob(draws))]
        return draws, "cstat (best fit; samples from the covariance)"
    if inf.method == "mcmc":
        with timer("mcmc"):
            res = run_mcmc(lik, n_walkers=inf.mcmc.walkers, n_steps=inf.mcmc.steps, seed=cfg.seed, progress=progress)
        summary["mcmc"] = res.record()
        return res.samples, "mcmc (emcee, Goodman & Weare 2010)"
    nc = inf.nested
    with timer("nested"):
        res = run_nested(lik, min_num_live_points=nc.live_points, dlogz=nc.dlogz, frac_remain=nc.frac_remain,
                         max_ncalls=nc.max_ncalls, seed=cfg.seed, progress=progress)
    summary["nested"] = res.record()
    return res.samples, "nested sampling (UltraNest, Buchner 2021)"


def _plots(out, spec, model, prior, result, plots):
    from .priors import LogUniform
    from .report import plot_corner, plot_folded_spectrum

    space_log = [n for n in prior.names if isinstance(prior.priors[n], LogUniform)]
    plot_corner([result.samples], prior.names, out / "corner.png", labels=[result.method.split(" ")[0]],
                log_params=space_log)
    sim = Simulator(model, spec, dtype=torch.float64)
    mu = sim.expected_counts(result.samples[: min(2000, len(result.samples))])
    band = tuple(np.percentile(mu, [15.87, 84.13], axis=0))
    plot_folded_spectrum(spec, result.best_counts, out / "spectrum.png", model_band=band,
                         label=f"best fit ({'W' if result.statistic == 'wstat' else 'C'} = {result.fit['cstat']:.1f}, "
                         f"expected {result.fit['expected_cstat']:.1f})")
    plots.update(corner="corner.png", spectrum="spectrum.png")
