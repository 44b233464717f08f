"""A trained amortized posterior: sampling, densities, compatibility checks, save and load."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, XsbiError
from ..record import versions
from .preprocess import Preprocessor
from .space import ParameterSpace

FORMAT = "xsbi-npe-1"


def spectrum_identity(spectrum) -> dict:
    """What a network trained on this spectrum's set-up must match to be applied to another."""
    bounds = np.asarray(spectrum.energy_bounds, dtype=np.float64)
    return {
        "response_hash": spectrum.response_hash,
        "n_bins": int(spectrum.n_bins),
        "bins_hash": hashlib.sha256(np.round(bounds, 6).tobytes()).hexdigest(),
        "energy_range": [float(bounds[0, 0]), float(bounds[-1, 1])],
        "notice_ranges": [list(map(float, r)) for r in spectrum.notice_ranges],
        "exposure": float(spectrum.exposure),
    }


def exposure_feature(log10_exposure, meta: dict) -> torch.Tensor:
    """The network input of exposure-conditioned NPE: log10(exposure / s) standardised with the
    training set's mean and standard deviation (``meta`` is ``posterior.meta["exposure"]``)."""
    z = (np.asarray(log10_exposure, dtype=np.float64) - meta["mean"]) / meta["std"]
    return torch.as_tensor(z, dtype=torch.float32)


#: relative slack on the trained exposure range: exposures read from headers (float32 keywords,
#: rounded values) must not fall out of a range they were meant to sit on the edge of
EXPOSURE_RTOL = 1e-6

#: a background spectrum whose shape differs from the training background's with a p-value below
#: this is refused by a network conditioned on the background level
BACKGROUND_SHAPE_PVALUE = 1e-3


def background_level_feature(log10_level, meta: dict) -> torch.Tensor:
    """The network input of background-level-conditioned NPE: log10(level) standardised with the
    training set's mean and standard deviation (``meta`` is ``posterior.meta["background_level"]``)."""
    return exposure_feature(log10_level, meta)


def background_shape_pvalue(counts, reference, scale) -> float:
    """p-value of the likelihood-ratio test that the background counts ``counts`` (``B_i``) and
    ``reference`` (``R_i``) come from Poisson rates in a known proportion per bin,
    ``E[B_i] = scale_i E[R_i]``, against free rates in every bin.

    Each bin's reference rate is profiled out; the statistic ``G`` is compared with a chi-square
    of (bins with counts) - 1 degrees of freedom, one for the level estimated from the totals.
    The chi-square law is asymptotic: with a few counts per bin the p-value is approximate.
    """
    from scipy.special import xlogy
    from scipy.stats import chi2

    counts, reference = np.asarray(counts, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), counts.shape)
    n = counts + reference
    rate = n / (1.0 + scale)  # the reference rates' maximum-likelihood values under the proportion
    g = 2.0 * float(np.sum(xlogy(counts, counts) - xlogy(counts, scale * rate)
                           + xlogy(reference, reference) - xlogy(reference, rate)))
    dof = int(np.count_nonzero(n)) - 1
    return float(chi2.sf(g, dof)) if dof >= 1 else 1.0


class AmortizedPosterior:
    """q(theta | x) from NPE, usable for any spectrum with the training set-up.

    Parameters are physical (``space.names`` order) on input and output; the network itself works
    in :class:`ParameterSpace` coordinates on preprocessed counts.
    """

    def __init__(self, estimators, space: ParameterSpace, preprocessor: Preprocessor, meta: dict, build: dict):
        from sbi.inference.posteriors import DirectPosterior

        # an ensemble of independently trained networks is an equal-weight mixture
        self.estimators = list(estimators) if isinstance(estimators, (list, tuple)) else [estimators]
        self.estimator = self.estimators[0]
        self.space = space
        self.preprocessor = preprocessor
        self.meta = meta
        self.build = build  # density-estimator hyper-parameters, to rebuild it when loading
        self.names = space.names
        prior = space.torch_prior()
        self._posteriors = [DirectPosterior(e, prior, device=str(next(e.parameters()).device)) for e in self.estimators]
        self._posterior = self._posteriors[0]

    @torch.no_grad()
    def _sample_member(self, i: int, n: int, x: torch.Tensor) -> torch.Tensor:
        """n draws of network i inside the prior box (phi space)."""
        from .maf_batch import _member_phi
        from .maf_sampler import supports_batched

        net = getattr(self.estimators[i], "net", None)
        if net is None or not supports_batched(net):
            return self._posteriors[i].sample((n,), x=x, show_progress_bars=False)
        # nflows repeats the spectrum for every draw and re-runs every MADE layer in each
        # autoregressive pass; for one spectrum most of that is constant (see maf_sampler).
        # Draws outside the prior box are rejected, as sbi does: the batched sampler's loop with
        # a block of one spectrum, more patient than over a batch (a poor early-round network of
        # multi-round NPE may put only a small fraction of its mass inside the prior).
        lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in self.space.bounds_phi())
        phi, failed = _member_phi(net, x.reshape(1, -1).float(), int(n), lo, hi, max_draws=10_000)
        if bool(failed[0]):
            raise XsbiError("the network puts almost no probability inside the prior; retrain it")
        return phi[0]

    def _sample_phi(self, n: int, x: torch.Tensor) -> torch.Tensor:
        k = len(self._posteriors)
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        parts = [self._sample_member(i, m, x) for i, m in enumerate(sizes) if m]
        phi = torch.cat(parts)
        return phi[torch.randperm(n)] if k > 1 else phi

    # --- exposure -------------------------------------------------------------------------------
    @property
    def exposure_range(self) -> tuple[float, float] | None:
        """(tmin, tmax) in seconds for a network conditioned on exposure, else None."""
        e = self.meta.get("exposure")
        return (float(e["range"][0]), float(e["range"][1])) if e else None

    @property
    def reference_exposure(self) -> float:
        """The training spectrum's exposure (s): the only one of an unconditioned network, and the
        default for counts given without an exposure."""
        return float(self.meta["spectrum"]["exposure"])

    def exposure_problem(self, exposure: float, rtol: float = EXPOSURE_RTOL) -> str | None:
        """Why the network cannot read a spectrum of this exposure (s), or None if it can."""
        t = float(exposure)
        rng = self.exposure_range
        if rng is None:
            ref = self.reference_exposure
            if math.isfinite(t) and abs(t - ref) <= rtol * ref:
                return None
            return (f"exposure {t:g} s, network trained for {ref:g} s (inference.exposure trains a network "
                    "for a range of exposures)")
        lo, hi = rng
        if math.isfinite(t) and lo * (1 - rtol) <= t <= hi * (1 + rtol):
            return None
        return (f"exposure {t:g} s is outside the range {lo:g}-{hi:g} s the network was trained for: "
                "retrain with inference.exposure covering it")

    def _exposures(self, exposure, m: int) -> np.ndarray:
        """(m,) exposures in seconds, checked: None means the reference exposure."""
        if exposure is None:
            return np.full(m, self.reference_exposure)
        from ..simulate.simulator import per_spectrum

        e = per_spectrum(exposure, m, "exposure", DataError)
        bad = [p for p in map(self.exposure_problem, np.unique(e)) if p]
        if bad:
            raise DataError("this network was not trained for this spectrum: " + "; ".join(bad[:3])
                            + (f" (and {len(bad) - 3} more exposures)" if len(bad) > 3 else ""))
        return e

    # --- compatibility ------------------------------------------------------------------------
    def check_compatible(self, spectrum, exposure_rtol: float = EXPOSURE_RTOL) -> None:
        """Raise DataError naming every difference between this spectrum and the training set-up.

        A network conditioned on exposure accepts any exposure inside its trained range; one
        conditioned on the background level, a background spectrum of the training one's shape at
        any level inside its range (:meth:`background_level_problems`)."""
        ident = spectrum_identity(spectrum)
        trained = self.meta["spectrum"]
        problems = []
        if ident["n_bins"] != trained["n_bins"]:
            problems.append(f"{ident['n_bins']} bins, network trained on {trained['n_bins']}")
        elif ident["bins_hash"] != trained["bins_hash"]:
            problems.append("different grouping or noticed band (bin energies differ)")
        if ident["response_hash"] != trained["response_hash"]:
            problems.append("different response (RMF/ARF)")
        exposure = self.exposure_problem(ident["exposure"], exposure_rtol)
        if exposure:
            problems.append(exposure)
        problems += self._background_problems(spectrum)
        if problems:
            raise DataError(
                "this network was not trained for this spectrum: " + "; ".join(problems)
                + ". Train a network on this set-up (xsbi run) or regroup/notice the spectrum as in training."
            )

    @property
    def background(self) -> dict | None:
        """The background the network was trained with (``PoissonBackground.record()``), or None."""
        return self.meta.get("background")

    # --- background level -----------------------------------------------------------------------
    @property
    def background_level_range(self) -> tuple[float, float] | None:
        """(lmin, lmax), factors on the training background, for a network conditioned on the
        background level, else None."""
        b = self.meta.get("background_level")
        return (float(b["range"][0]), float(b["range"][1])) if b else None

    def _trained_ratio(self, exposure: float) -> np.ndarray:
        """The training background's scaling to the source region, per bin, at this source
        exposure (the source region's share grows with it under exposure conditioning)."""
        ratio = np.asarray(self.meta["background_level"]["ratio"], dtype=np.float64)
        if self.exposure_range is not None:
            ratio = ratio * (float(exposure) / self.reference_exposure)
        return ratio

    def measure_background_level(self, counts, ratio, exposure: float) -> float:
        """The level of a background spectrum (grouped counts ``B``, per-bin scaling ``r`` to the
        source region) relative to the training one: ``sum(r B) / sum(r_train B_train)``, the
        background counts expected in the source region (at the source ``exposure``, s)."""
        counts = np.asarray(counts, dtype=np.float64)
        ratio = np.broadcast_to(np.asarray(ratio, dtype=np.float64), counts.shape)
        trained = np.asarray(self.meta["background_level"]["counts"], dtype=np.float64)
        return float(np.sum(ratio * counts) / np.sum(self._trained_ratio(exposure) * trained))

    def background_level_problems(self, counts, ratio, exposure: float,
                                  rtol: float = EXPOSURE_RTOL) -> tuple[float | None, list[str]]:
        """(level, problems) of a background spectrum for a network conditioned on the background
        level: its level must lie in the trained range and its shape must be the training
        background's (:func:`background_shape_pvalue`), because the network marginalises the
        background with that shape scaled by the level."""
        b = self.meta["background_level"]
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (len(b["counts"]),):
            return None, [f"a background spectrum of {counts.size} channels after grouping, the network's has "
                          f"{len(b['counts'])}"]
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            return None, ["background counts must be finite and non-negative"]
        ratio = np.broadcast_to(np.asarray(ratio, dtype=np.float64), counts.shape)
        level = self.measure_background_level(counts, ratio, exposure)
        problems = []
        lo, hi = self.background_level_range
        if not (math.isfinite(level) and lo * (1 - rtol) <= level <= hi * (1 + rtol)):
            problems.append(f"background level {level:.4g} is outside the range {lo:g}-{hi:g} the network was "
                            "trained for: retrain with inference.background_level covering it")
        if math.isfinite(level) and level > 0:
            # E[B_new_i] r_new_i = level r_train_i E[B_train_i] (at this exposure)
            scale = level * self._trained_ratio(exposure) / ratio
            p = background_shape_pvalue(counts, b["counts"], scale)
            if p < BACKGROUND_SHAPE_PVALUE:
                problems.append(
                    f"a background spectrum of a different shape (likelihood-ratio test against the training "
                    f"background scaled by {level:.4g}: p = {p:.2g} < {BACKGROUND_SHAPE_PVALUE:g}); the network "
                    "marginalises the background with the training background's shape")
        return level, problems

    def spectrum_background_level(self, spectrum) -> float:
        """The background level of a spectrum, measured from its background spectrum
        (:meth:`measure_background_level`)."""
        if getattr(spectrum, "background_counts", None) is None:
            raise DataError("the network was trained with a background spectrum and this spectrum has none")
        return self.measure_background_level(spectrum.background_counts, spectrum.background_ratio,
                                             float(spectrum.exposure))

    def _levels(self, background_level, m: int) -> np.ndarray | None:
        """(m,) background levels, checked, or None for a network not conditioned on them
        (None means level 1, the training background)."""
        if self.background_level_range is None:
            if background_level is not None:
                raise DataError("background_level given for a network not conditioned on the background level "
                                "(inference.background_level trains one)")
            return None
        if background_level is None:
            return np.ones(m)
        from ..simulate.simulator import per_spectrum

        lv = per_spectrum(background_level, m, "background_level", DataError)
        lo, hi = self.background_level_range
        bad = ~(np.isfinite(lv) & (lv >= lo * (1 - EXPOSURE_RTOL)) & (lv <= hi * (1 + EXPOSURE_RTOL)))
        if bad.any():
            raise DataError(f"this network was not trained for this spectrum: background level {lv[bad][0]:.4g} is "
                            f"outside the range {lo:g}-{hi:g} the network was trained for: retrain with "
                            "inference.background_level covering it")
        return lv

    def _background_problems(self, spectrum) -> list[str]:
        has = getattr(spectrum, "background_counts", None) is not None
        if not self.background:
            return []  # a background-free network ignores a background, as the paper did
        if not has:
            return ["the network was trained with a background spectrum and this spectrum has none"]
        if self.background_level_range is not None:
            return self.background_level_problems(spectrum.background_counts, spectrum.background_ratio,
                                                  float(spectrum.exposure))[1]
        from ..simulate.background import PoissonBackground

        mine = PoissonBackground(spectrum).identity()
        trained = self.background["ratio_mean"]
        if self.exposure_range is not None:
            # the source region's share of the background grows with the source exposure
            # (xsbi.simulate.background): compare at this spectrum's exposure
            trained *= float(spectrum.exposure) / self.reference_exposure
        if not np.isclose(mine["ratio_mean"], trained, rtol=1e-6):
            return [f"background scaling {mine['ratio_mean']:.6g}, network trained for {trained:.6g}"]
        if mine["counts_hash"] != self.background["counts_hash"]:
            return [f"a different background spectrum ({mine['counts']} counts; the network's background "
                    f"nuisance rates were drawn from one with {self.background['counts']})"]
        return []

    def observation(self, spectrum) -> np.ndarray:
        """The counts the network reads for ``spectrum``, after checking it is one it was trained for."""
        self.check_compatible(spectrum)
        return np.asarray(spectrum.counts, dtype=np.float64)

    # --- inference ------------------------------------------------------------------------------
    def _x(self, counts, exposure=None, background_level=None) -> torch.Tensor:
        """Network inputs (M, k) for counts (or a Spectrum, which brings its own exposure and
        background level); ``exposure`` in seconds, one or one per spectrum (default: the
        reference exposure); ``background_level`` likewise (default 1, the training background)."""
        if hasattr(counts, "counts"):
            spectrum = counts
            if exposure is not None and abs(float(exposure) - float(spectrum.exposure)) > EXPOSURE_RTOL * float(spectrum.exposure):
                raise DataError(f"exposure={float(exposure):g} s given for a spectrum of {float(spectrum.exposure):g} s")
            exposure = float(spectrum.exposure)
            counts = self.observation(spectrum)
            if self.background_level_range is not None:
                level = self.spectrum_background_level(spectrum)
                if background_level is not None and not np.allclose(background_level, level, rtol=EXPOSURE_RTOL):
                    raise DataError(f"background_level={float(np.mean(background_level)):g} given for a spectrum whose "
                                    f"background is at level {level:g}")
                background_level = level
        c = torch.as_tensor(np.asarray(counts, dtype=np.float32))
        if c.ndim == 1:
            c = c[None]
        if c.shape[-1] != self.meta["spectrum"]["n_bins"]:
            raise DataError(
                f"spectrum has {c.shape[-1]} bins, network trained on {self.meta['spectrum']['n_bins']}; "
                "use the grouping and band of the training set-up"
            )
        if not torch.isfinite(c).all() or (c < 0).any():
            raise DataError("counts must be finite and non-negative")
        t = self._exposures(exposure, c.shape[0])
        levels = self._levels(background_level, c.shape[0])
        x = self.preprocessor(c)
        # in training's order (NPE.train): counts, exposure, background level
        features = [x]
        if self.meta.get("exposure"):
            features.append(exposure_feature(np.log10(t), self.meta["exposure"]).to(x.device)[:, None])
        if levels is not None:
            features.append(background_level_feature(np.log10(levels), self.meta["background_level"]).to(x.device)[:, None])
        return torch.cat(features, dim=1) if len(features) > 1 else x

    def sample(self, counts, n: int, seed: int | None = None, progress: bool = False, exposure=None,
               background_level=None) -> np.ndarray:
        """(n, d) physical posterior samples for one spectrum's grouped counts (or a Spectrum).

        ``exposure`` (s) for counts: the spectrum's exposure, which a network conditioned on
        exposure reads; default the training spectrum's.  ``background_level`` for counts: its
        background's level relative to the training one, which a network conditioned on the
        background level reads; default 1.  A Spectrum gives its own of both."""
        if seed is not None:
            torch.manual_seed(seed)
        x = self._x(counts, exposure, background_level)
        with torch.no_grad():
            phi = self._sample_phi(int(n), x[0])
        return self.space.to_theta(phi.cpu().numpy())

    def sample_batched(self, counts, n: int, seed: int | None = None, progress: bool = False,
                       block: int = 256, exposure=None, background_level=None) -> np.ndarray:
        """(M, n, d) samples for M spectra (amortized inference: no retraining).

        Spectra go through the flow in blocks of ``block`` (one batched pass per block,
        :func:`~.maf_batch.sample_many`); with a ``seed``, each spectrum's draws depend only on
        the seed and its position, not on the block size.  ``exposure`` (s): one for all spectra
        or one each (see :meth:`sample`); ``background_level`` likewise.
        """
        from tqdm.auto import tqdm

        from .maf_batch import sample_many

        c = np.asarray(counts, dtype=np.float64)
        c = c[None] if c.ndim == 1 else c
        t = None if exposure is None else self._exposures(exposure, len(c))
        lv = None if background_level is None else self._levels(background_level, len(c))
        seeds = np.random.SeedSequence(seed).generate_state(len(c), np.uint32) if seed is not None else None
        out = np.empty((len(c), int(n), self.space.dim))
        for start in tqdm(range(0, len(c), block), desc="posterior samples", unit="block", disable=not progress):
            stop = start + block
            out[start:stop] = sample_many(self, c[start:stop], int(n),
                                          seeds=None if seeds is None else seeds[start:stop],
                                          exposure=None if t is None else t[start:stop],
                                          background_level=None if lv is None else lv[start:stop])
        return out

    def log_prob(self, theta, counts, exposure=None, background_level=None) -> np.ndarray:
        """log q(theta | x) in physical parameters (the network's density times the Jacobian);
        ``exposure`` and ``background_level`` as in :meth:`sample`."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        phi = torch.as_tensor(self.space.to_phi(theta), dtype=torch.float32)
        with torch.no_grad():
            lp = self._log_prob_phi(phi, self._x(counts, exposure, background_level)[0]).cpu().numpy()
        return lp + self.space.log_jacobian(theta)

    def _member_log_prob(self, i: int, phi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        net = getattr(self.estimators[i], "net", None)
        if net is None or not hasattr(net, "_transform") or not hasattr(net, "_embedding_net"):
            return self._posteriors[i].log_prob(phi, x=x, norm_posterior=False)
        # nflows would repeat the spectrum for every point and recompute each transform's
        # context layer per point; one context row broadcasts to the same values.
        context = net._embedding_net(x.reshape(1, -1).float())
        noise, logabsdet = net._transform(phi, context=context)
        lp = net._distribution.log_prob(noise) + logabsdet
        lo, hi = (torch.as_tensor(b, dtype=phi.dtype) for b in self.space.bounds_phi())
        inside = torch.all((phi >= lo) & (phi <= hi), dim=1)
        return torch.where(inside, lp, torch.full_like(lp, -torch.inf))

    def _log_prob_phi(self, phi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised (inside the prior box) mixture density in network coordinates."""
        phi = phi.float()
        lps = torch.stack([self._member_log_prob(i, phi, x) for i in range(len(self._posteriors))])
        return torch.logsumexp(lps, 0) - np.log(len(self._posteriors))

    @torch.no_grad()
    def _hpd_threshold(self, x: torch.Tensor, quantile: float, n_draws: int) -> tuple[float, torch.Tensor]:
        """The ``quantile``-quantile of log q under q at network input ``x``, and the
        ``n_draws`` draws (phi) it was estimated from (torch's global generator)."""
        phi = self._sample_phi(int(n_draws), x)
        lp = self._log_prob_phi(phi, x)
        return (float(torch.quantile(lp, quantile)) if quantile > 0 else -np.inf), phi

    def hpd_acceptor(self, observations, quantile: float = 1e-4, n_draws: int = 20_000, seed: int = 0):
        """Membership test ``accept(phi) -> bool tensor`` of a truncated posterior support.

        The region is, for each observation, ``{phi : log q(phi | x) >= t}`` with ``t`` the
        ``quantile``-quantile of ``log q`` under ``q`` itself (the highest-density region holding
        ``1 - quantile`` of the mass), and the union over observations.  This is the truncation
        of TSNPE (Deistler, Goncalves & Macke 2022) and of the coarse-NPE restricted prior.
        """
        obs = [np.asarray(o) for o in (observations if np.ndim(observations[0]) else [observations])]
        xs = [self._x(o)[0] for o in obs]
        torch.manual_seed(seed)
        thresholds = [self._hpd_threshold(xo, quantile, n_draws)[0] for xo in xs]

        def accept(phi: torch.Tensor) -> torch.Tensor:
            ok = torch.zeros(phi.shape[0], dtype=torch.bool)
            with torch.no_grad():
                for xo, thr in zip(xs, thresholds):
                    ok |= self._log_prob_phi(phi, xo) >= thr
            return ok

        return accept

    # --- persistence ----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the network and everything needed to reuse it safely (no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "meta": json.dumps(self.meta),
            "build": json.dumps(self.build),
            "state_dicts": [{k: v.detach().cpu() for k, v in e.state_dict().items()} for e in self.estimators],
            "preprocess": {k: v for k, v in self.preprocessor.state().items() if isinstance(v, torch.Tensor)},
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path, device: str = "cpu") -> "AmortizedPosterior":
        from ..models import Model
        from ..priors import JointPrior
        from .npe import build_estimator

        path = Path(path)
        if not path.is_file():
            raise XsbiError(f"network file {path} not found")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
            raise XsbiError(f"{path} is not an xsbi network file ({exc.__class__.__name__}: {exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise XsbiError(f"{path} is not an xsbi network file (format {FORMAT})")
        meta = json.loads(payload["meta"])
        build = json.loads(payload["build"])
        model = Model(meta["model"]["expression"], meta["model"].get("options"))
        space = ParameterSpace(JointPrior(model, meta["priors"]))
        state = dict(payload["preprocess"])
        state.update(meta["preprocess"])
        pre = Preprocessor.from_state(state)
        estimators = []
        extra = (1 if meta.get("exposure") else 0) + (1 if meta.get("background_level") else 0)
        for state_dict in payload["state_dicts"]:
            estimator = build_estimator(build, space, pre, meta["spectrum"]["n_bins"], extra)
            estimator.load_state_dict(state_dict)
            estimators.append(estimator.to(device).eval())
        return cls(estimators, space, pre, meta, build)

    def record(self) -> dict:
        return {"meta": self.meta, "build": self.build}

    @property
    def preparation(self) -> dict:
        """How training spectra were grouped and noticed (``xsbi.data.preparation``); networks
        saved before it was recorded: the file's own grouping and the trained band."""
        return self.meta.get("preparation") or {"group": {"method": "file"},
                                                "notice_ranges": self.meta["spectrum"]["notice_ranges"]}


def make_meta(model, prior, spectrum, preprocessor: Preprocessor, training: dict, preparation: dict | None = None) -> dict:
    ident = spectrum_identity(spectrum)
    return {
        "model": {"expression": model.expression, "options": model.options, "free": model.parameter_names,
                  "frozen": model.frozen},
        "priors": prior.record(),
        "spectrum": ident,
        # how to prepare a PHA file like the training spectrum (xsbi.data.preparation); `xsbi run`
        # replaces it with its data.group and data.energy
        "preparation": preparation or {"group": {"method": "file"}, "notice_ranges": ident["notice_ranges"]},
        "preprocess": {"transform": preprocessor.transform, "pca": preprocessor.pca},
        "training": training,
        "versions": versions(),
    }
