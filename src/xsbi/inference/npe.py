"""Neural posterior estimation (Papamakarios & Murray 2016; Greenberg et al. 2019) through sbi.

``NPE(model, prior, spectrum).append_simulations(theta, x).train()`` returns an
:class:`AmortizedPosterior` that serves every spectrum with the training set-up.  The density
estimator defaults to the seed paper's: a masked autoregressive flow (Papamakarios et al. 2017)
of 5 transforms with 50 hidden units.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import torch

from ..errors import XsbiError
from .posterior import AmortizedPosterior, background_level_feature, exposure_feature, make_meta
from .preprocess import Preprocessor
from .space import ParameterSpace

ESTIMATORS = ("maf", "nsf", "mdn")


def estimator_builder(build: dict):
    from sbi.neural_nets import posterior_nn

    if build["density_estimator"] not in ESTIMATORS:
        raise XsbiError(f"unknown density estimator '{build['density_estimator']}'; choose one of {', '.join(ESTIMATORS)}")
    return posterior_nn(
        model=build["density_estimator"],
        hidden_features=int(build["hidden_features"]),
        num_transforms=int(build["num_transforms"]),
        z_score_theta="independent",
        z_score_x="independent",
    )


def build_estimator(build: dict, space: ParameterSpace, pre: Preprocessor, n_bins: int, extra_features: int = 0):
    """An untrained estimator of the right shape (its z-scoring buffers come with a state_dict).
    ``extra_features``: inputs appended to the preprocessed counts (the exposure and background
    level features)."""
    g = torch.Generator().manual_seed(0)
    k = (pre.n_features or n_bins) + int(extra_features)
    return estimator_builder(build)(torch.randn(16, space.dim, generator=g), torch.randn(16, k, generator=g))


class _NoTracking:
    """sbi logs training to TensorBoard files in ./sbi-logs by default; xsbi records its own."""

    log_dir = None

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


def _to_phi_tensor(space: ParameterSpace, theta) -> torch.Tensor:
    return torch.as_tensor(space.to_phi(theta), dtype=torch.float32)


def _positive_range(value, name: str, lo_name: str, hi_name: str, unit: str) -> tuple[float, float]:
    """``value`` as ``(lo, hi)`` floats with ``0 < lo <= hi``; XsbiError naming ``name`` otherwise."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise XsbiError(f"{name} must be ({lo_name}, {hi_name}) {unit}, got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise XsbiError(f"{name} must be ({lo_name}, {hi_name}) {unit} with 0 < {lo_name} <= {hi_name}, "
                        f"got ({lo:g}, {hi:g})")
    return lo, hi


def check_exposure_range(exposure_range) -> tuple[float, float] | None:
    """``(tmin, tmax)`` in seconds with ``0 < tmin <= tmax``, or None."""
    if exposure_range is None:
        return None
    return _positive_range(exposure_range, "exposure_range", "tmin", "tmax", "in seconds")


def check_background_level_range(level_range, background) -> tuple[float, float] | None:
    """``(lmin, lmax)`` factors on the training background with ``0 < lmin <= lmax``, or None;
    only meaningful with a background."""
    if level_range is None:
        return None
    if background is None:
        raise XsbiError("background_level needs a background: pass background=PoissonBackground(spectrum) "
                        "and simulate with SourceAndBackground")
    lo, hi = _positive_range(level_range, "background_level", "lmin", "lmax", "factors")
    if not float(np.sum(background.counts)) > 0:
        # a level is measured relative to the training background's counts
        raise XsbiError("background_level needs a training background spectrum with counts")
    return lo, hi


def _feature_meta(log_values: np.ndarray, value_range, feature: str) -> dict:
    std = float(log_values.std())
    # a range of one value gives a constant feature: any scale keeps it at 0
    return {"range": list(value_range), "feature": feature, "mean": float(log_values.mean()),
            "std": std if std > 0 else 1.0}


def _in_range(values, value_range, what: str, unit: str = "") -> np.ndarray:
    """``values``, checked to lie in ``value_range`` (``what``: e.g. "exposures must lie in exposure_range")."""
    lo, hi = value_range
    if not np.all(np.isfinite(values)) or np.any(values < lo * (1 - 1e-9)) or np.any(values > hi * (1 + 1e-9)):
        raise XsbiError(f"simulation {what} [{lo:g}, {hi:g}]{unit}, got "
                        f"[{np.nanmin(values):g}, {np.nanmax(values):g}]")
    return values


class NPE:
    """Single-round (amortized) NPE on simulations from a (restricted) prior.

    Parameters
    ----------
    model, prior : xsbi.Model, xsbi.JointPrior
    spectrum : Spectrum
        The set-up (response, grouping, band, exposure) the network is trained for.
    density_estimator : {"maf", "nsf", "mdn"}
    hidden_features, num_transforms : int
    preprocessing : {"anscombe", "log1p", "none"}
    pca : float or None
        Keep the principal components explaining this fraction of the variance.
    ensemble : int
        Train this many networks (different seeds and validation splits) and use their
        equal-weight mixture: averages out training noise and counters the over-confidence of
        single networks (Hermans et al. 2022, "A crisis in simulation-based inference?").
    background : xsbi.simulate.PoissonBackground, optional
        The background the simulations were made with (:class:`~xsbi.simulate.SourceAndBackground`):
        recorded so that the network is only applied to spectra with this background.
    exposure_range : (tmin, tmax), optional
        Condition the network on the exposure (seconds): every simulation then comes with its own
        exposure in this range (``append_simulations(theta, x, exposure=...)``, e.g. from
        :func:`xsbi.simulate.sample_exposures`) and the network reads ``log10(exposure)``,
        standardised, after the preprocessed counts.  One network then serves spectra of any
        exposure in the range (docs/exposure.md).  Without it the network is for
        ``spectrum.exposure`` only.
    background_level : (lmin, lmax), optional
        With a ``background``: condition the network on the background level, a factor on the
        training background (``append_simulations(theta, x, background_level=...)``, e.g. from
        :func:`xsbi.simulate.sample_background_levels`, simulated with
        ``SourceAndBackground.sample(..., background_level=...)``).  The network reads
        ``log10(level)``, standardised, after the counts (and the exposure); it then serves
        spectra whose background has the training background's shape at any level in the range
        (docs/exposure.md).  Without it the network is for the training background spectrum only.
    """

    def __init__(self, model, prior, spectrum, density_estimator="maf", hidden_features=50, num_transforms=5,
                 preprocessing="anscombe", pca=None, device="cpu", ensemble: int = 1, background=None,
                 exposure_range=None, background_level=None):
        self.model = model
        self.prior = prior
        self.spectrum = spectrum
        self.space = ParameterSpace(prior)
        self.preprocessor = Preprocessor(preprocessing, pca)
        self.build = {"density_estimator": density_estimator, "hidden_features": int(hidden_features),
                      "num_transforms": int(num_transforms)}
        estimator_builder(self.build)  # validate early
        self.device = device
        if int(ensemble) < 1:
            raise XsbiError(f"ensemble must be a positive number of networks, got {ensemble}")
        self.ensemble = int(ensemble)
        self.background = background
        self.exposure_range = check_exposure_range(exposure_range)
        self.background_level = check_background_level_range(background_level, background)
        self._theta: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self._exposure: list[np.ndarray] = []
        self._level: list[np.ndarray] = []

    def append_simulations(self, theta, x, exposure=None, background_level=None) -> "NPE":
        """Add simulations; ``exposure`` (s, one per spectrum) is required with an
        ``exposure_range`` and must then lie inside it; ``background_level`` (one per spectrum)
        likewise with a ``background_level`` range."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if theta.shape[0] != x.shape[0] or theta.shape[1] != self.space.dim or x.shape[1] != self.spectrum.n_bins:
            raise XsbiError(
                f"simulations must be theta (N, {self.space.dim}) and x (N, {self.spectrum.n_bins}); "
                f"got {theta.shape} and {x.shape}"
            )
        if self.exposure_range is None:
            if exposure is not None:
                raise XsbiError("exposures given for a network that is not conditioned on exposure: "
                                "pass exposure_range=(tmin, tmax) to NPE")
        else:
            if exposure is None:
                raise XsbiError("this NPE is conditioned on exposure (exposure_range): give each simulation's "
                                "exposure, append_simulations(theta, x, exposure=...)")
            exposure = np.broadcast_to(np.asarray(exposure, dtype=np.float64), (x.shape[0],)).copy()
            self._exposure.append(_in_range(exposure, self.exposure_range, "exposures must lie in exposure_range", " s"))
        level = self._check_levels(background_level, x.shape[0])
        if level is not None:
            self._level.append(level)
        self._theta.append(theta)
        self._x.append(x)
        return self

    def _check_levels(self, background_level, n: int) -> np.ndarray | None:
        if self.background_level is None:
            if background_level is not None:
                raise XsbiError("background levels given for a network that is not conditioned on the background "
                                "level: pass background_level=(lmin, lmax) to NPE")
            return None
        if background_level is None:
            raise XsbiError("this NPE is conditioned on the background level (background_level): give each "
                            "simulation's level, append_simulations(theta, x, background_level=...)")
        try:
            level = np.broadcast_to(np.asarray(background_level, dtype=np.float64), (n,)).copy()
        except ValueError:
            raise XsbiError(f"background_level must be one number or one per simulation ({n})") from None
        return _in_range(level, self.background_level, "background levels must lie in background_level")

    def train(self, training_batch_size=200, learning_rate=5e-4, stop_after_epochs=20, max_epochs=None, seed=0,
              progress=True) -> AmortizedPosterior:
        from sbi.inference import NPE as SbiNPE

        if not self._theta:
            raise XsbiError("no simulations: call append_simulations(theta, x) first")
        torch.manual_seed(seed)
        theta = np.concatenate(self._theta)
        x = torch.as_tensor(np.concatenate(self._x))
        self.preprocessor.fit(x)
        t0 = time.perf_counter()
        phi, xp = _to_phi_tensor(self.space, theta), self.preprocessor(x)
        exposure_meta = level_meta = None
        if self.exposure_range is not None:
            log_t = np.log10(np.concatenate(self._exposure))
            exposure_meta = _feature_meta(log_t, self.exposure_range, "log10(exposure / s), standardised")
            xp = torch.cat([xp, exposure_feature(log_t, exposure_meta)[:, None]], dim=1)
        if self.background_level is not None:
            # after the exposure feature: AmortizedPosterior._x appends them in this order
            log_l = np.log10(np.concatenate(self._level))
            level_meta = _feature_meta(log_l, self.background_level, "log10(background level), standardised")
            # the training background, per bin: a spectrum's level and shape are measured against it
            level_meta["counts"] = self.background.counts.tolist()
            level_meta["ratio"] = self.background.ratio.tolist()
            xp = torch.cat([xp, background_level_feature(log_l, level_meta)[:, None]], dim=1)
        estimators, epochs, losses = [], [], []
        for k in range(self.ensemble):
            torch.manual_seed(seed + 1000 * k)
            inference = SbiNPE(prior=self.space.torch_prior(), density_estimator=estimator_builder(self.build),
                               device=self.device, show_progress_bars=progress, tracker=_NoTracking())
            inference.append_simulations(phi, xp)
            # sbi prints its convergence message even without progress bars
            quiet = contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO())
            with quiet:
                estimator = inference.train(
                    training_batch_size=int(training_batch_size), learning_rate=float(learning_rate),
                    stop_after_epochs=int(stop_after_epochs), max_num_epochs=int(max_epochs) if max_epochs else 2**31 - 1,
                )
            estimators.append(estimator.eval())
            summary = inference.summary
            epochs.append(int(summary["epochs_trained"][-1]) if summary.get("epochs_trained") else None)
            losses.append(float(summary["best_validation_loss"][-1]) if summary.get("best_validation_loss") else None)
        training = {
            "method": "npe (single round, amortized)" + (f", ensemble of {self.ensemble}" if self.ensemble > 1 else ""),
            "simulations": int(len(theta)),
            "epochs": epochs[0] if self.ensemble == 1 else epochs,
            "best_validation_loss": losses[0] if self.ensemble == 1 else losses,
            "training_batch_size": int(training_batch_size), "learning_rate": float(learning_rate),
            "stop_after_epochs": int(stop_after_epochs), "seed": seed, "ensemble": self.ensemble,
            "train_seconds": time.perf_counter() - t0,
            "pca_components": self.preprocessor.n_features,
        }
        meta = make_meta(self.model, self.prior, self.spectrum, self.preprocessor, training)
        meta["background"] = self.background.record() if self.background is not None else None
        if exposure_meta is not None:
            meta["exposure"] = exposure_meta
        if level_meta is not None:
            meta["background_level"] = level_meta
        return AmortizedPosterior(estimators, self.space, self.preprocessor, meta, self.build)
