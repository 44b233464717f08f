"""``xsbi batch``: a saved amortized network applied to many spectra, streamed to a table.

Every spectrum is prepared as the network's training spectrum was (the grouping and band recorded
in ``network.pt``, see :mod:`xsbi.data.preparation`), checked against the training set-up
(bins, response, exposure or its trained range, background) and, when it fits, given ``n_samples``
posterior draws (each spectrum with its own exposure for a network conditioned on exposure, and
its own background level, measured from its background spectrum, for one conditioned on that); its
row holds per parameter the median and the 16% and 84% quantiles (as ``summary.json``), and the
best fit among the draws (lowest C-stat; W-stat for a network trained with a background) with its
C-stat against the value expected for the best-fit model (Kaastra 2017).  Spectra the network was
not trained for, and files that cannot be read, get a ``skipped`` row that says why.  With
``importance`` the draws are reweighted by the exact likelihood, as ``xsbi run`` does
(:mod:`xsbi.inference.importance`), and the quantiles are the weighted ones.

Throughput: spectra are processed in blocks whose posterior draws come from one batched pass of
the flow (:mod:`xsbi.inference.maf_batch`) and whose models are folded in one batched call per
response set-up (whatever the spectra's exposures: the expected counts are scaled to each).  On
Linux the blocks go to forked worker processes, one core each, that read, sample and fit them:
threads would share the interpreter lock with the Python code that reads the files.  The first
block runs in the parent, so the workers inherit its responses and simulators.  Responses (and
background spectra) are read once per distinct file and process.  Where fork is unavailable,
threads process the blocks and a background thread reads the files.  Rows are written to the CSV
file in input order as they come, and the FITS table is streamed from it at the end: memory does
not grow with the number of spectra.
"""

from __future__ import annotations

import csv
import functools
import math
import queue
import re
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, XsbiError

__all__ = ["run_batch", "run_batch_counts", "BatchResult", "ResponseCache", "table_columns", "table_paths",
           "load_pha"]

QUANTILES = (0.16, 0.5, 0.84)  # as summary.json (xsbi.likelihood.poisson.summarize)
STATS = ("median", "q16", "q84")
FIXED = ("file", "status", "reason", "counts", "exposure")
FIT = ("cstat", "expected_cstat", "cstat_std", "cstat_sigma")
IMPORTANCE = ("is_efficiency",)
STRING_COLUMNS = ("file", "status", "reason")
NOT_TRAINED = "this network was not trained for this spectrum: "
_OUT_OF_RANGE = re.compile(r"^exposure (\S+) s is outside the range (\S+)-(\S+) s ")
_FIT_ROWS = 512  # draws whose models are computed at once for the best fit (~2 MB: they stay in cache)


def table_columns(names, importance: bool = False) -> list[str]:
    """Column names of the table, in order, for parameters ``names`` (``component.parameter``);
    with ``importance``, the sampling efficiency of the reweighted draws last."""
    return [*FIXED, *(f"{n}_{s}" for n in names for s in STATS), *FIT, *(IMPORTANCE if importance else ())]


def table_paths(out) -> tuple[Path, Path]:
    """``(TABLE.csv, TABLE.fits)`` for a path stem (a ``.csv``/``.fits`` suffix is dropped)."""
    p = Path(out)
    if p.suffix.lower() in (".csv", ".fits", ".fit", ".fts"):
        p = p.with_suffix("")
    return p.parent / (p.name + ".csv"), p.parent / (p.name + ".fits")


# ------------------------------------------------------------------------------------ reading
class ResponseCache:
    """RMFs, ARFs and background spectra read once each, keyed by resolved path, size and mtime.

    ``loads`` counts the files actually read, ``hits`` the reuses.  At most ``max_entries`` of
    each kind are kept (least recently used go first).
    """

    def __init__(self, max_entries: int = 32):
        self.max_entries = int(max_entries)
        self._items: dict[str, OrderedDict] = {}
        self.loads: Counter = Counter()
        self.hits: Counter = Counter()

    def _get(self, kind, path, reader, *extra):
        path = Path(path).resolve()
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size, *extra)
        items = self._items.setdefault(kind, OrderedDict())
        if key in items:
            items.move_to_end(key)
            self.hits[kind] += 1
            return items[key]
        obj = reader(path)
        items[key] = obj
        self.loads[kind] += 1
        if len(items) > self.max_entries:
            items.popitem(last=False)
        return obj

    def rmf(self, path):
        from .data.response import read_rmf

        return self._get("rmf", path, read_rmf)

    def arf(self, path):
        from .data.response import read_arf

        return self._get("arf", path, read_arf)

    def background(self, path, rmf):
        from .data.spectrum import _load_background

        return self._get("background", path, lambda p: _load_background(p, rmf), id(rmf))


def load_pha(path, cache: ResponseCache | None = None, background: bool = True):
    """:func:`xsbi.data.load_spectrum` for a PHA file whose RESPFILE/ANCRFILE (and BACKFILE when
    ``background``) come from ``cache``: each response is read once however many spectra use it."""
    from .data.spectrum import load_spectrum

    return load_spectrum(path, background=None if background else False,
                         files=cache if cache is not None else ResponseCache())


# ------------------------------------------------------------------------------------ items
@dataclass
class _Item:
    index: int
    label: str
    x: np.ndarray | None = None  # what the network reads
    counts: np.ndarray | None = None  # grouped source counts
    background: np.ndarray | None = None  # grouped background counts (background networks)
    ratio: np.ndarray | None = None  # background scaling per bin
    total: int | None = None
    exposure: float | None = None
    level: float | None = None  # background level (networks conditioned on it)
    setup: tuple | None = None  # key of the response set-up (simulator cache)
    spectrum: object = None
    reason: str | None = None
    category: str | None = None


def _not_trained(exc: Exception) -> tuple[str, str]:
    """Short reason and its category from AmortizedPosterior.check_compatible's message."""
    msg = str(exc)
    if NOT_TRAINED not in msg:
        return msg, "incompatible spectrum"
    core = msg.split(NOT_TRAINED, 1)[1].split(". Train a network", 1)[0]
    cats, parts = [], []
    for problem in core.split("; "):
        out_of_range = _OUT_OF_RANGE.match(problem)
        if out_of_range:
            t, lo, hi = out_of_range.groups()
            problem = f"exposure outside the trained range ({t} s; the network covers {lo}-{hi} s)"
        parts.append(problem)
        if out_of_range:
            cats.append("exposure outside the trained range")
        elif problem.startswith("background level") and "outside the range" in problem:
            cats.append("background level outside the trained range")
        elif "background" in problem:  # before "bins": a background's message may name its channels
            cats.append("background differs")
        elif "bins" in problem or "grouping" in problem or "band" in problem:
            cats.append("binning or band differs")
        elif "response" in problem:
            cats.append("response differs")
        elif problem.startswith("exposure"):
            cats.append("exposure differs")
        else:
            cats.append(problem)
    return "not trained for this spectrum: " + "; ".join(parts), " and ".join(dict.fromkeys(cats))


def _setup_key(spec, ident) -> tuple:
    # no exposure: one simulator per response serves every exposure (best_fit scales its counts),
    # so that spectra of many exposures do not each build and evict a simulator
    areascal = np.asarray(spec.areascal, dtype=np.float64)
    return (ident["response_hash"], ident["bins_hash"], areascal.tobytes())


class _Screen:
    """Expected counts of many draws in float32, to find the few with the lowest statistic.

    The model is bound to the simulator's energies, and the response folded as dense tiles of a
    few bins over the energies they respond to: a bin's response spans ~75 of the ~1,100 model
    energies of the NICER set-up, and dense tiles (about 1.5x the non-zeros) run faster than the
    sparse product.  The same numbers as ``Simulator.expected_counts`` up to float32 rounding,
    returned as (n_bins, N).
    """

    TILE = 8

    def __init__(self, sim):
        self.bound = sim.model.bind(sim.energ_lo, sim.energ_hi, "cpu", torch.float32)
        m = sim.fold.matrix_t
        dense = (m.to_dense() if m.layout != torch.strided else m).to(torch.float32)  # (n_bins, n_E)
        nonzero = dense != 0
        self.n_bins = dense.shape[0]
        self.tiles = []
        for b0 in range(0, self.n_bins, self.TILE):
            b1 = min(self.n_bins, b0 + self.TILE)
            cols = torch.nonzero(nonzero[b0:b1].any(0)).flatten()
            if cols.numel():
                e0, e1 = int(cols[0]), int(cols[-1]) + 1
                self.tiles.append((b0, b1, e0, e1, dense[b0:b1, e0:e1].contiguous()))

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        flux_t = self.bound(theta).t()  # (n_E, N): the models return a transposed view
        if not flux_t.is_contiguous():
            flux_t = flux_t.contiguous()
        out = torch.zeros(self.n_bins, flux_t.shape[1])
        for b0, b1, e0, e1, m in self.tiles:
            torch.mm(m, flux_t[e0:e1], out=out[b0:b1])
        return out.clamp_(min=0.0)


class _Engine:
    """Samples, summarises and fits blocks of prepared spectra."""

    def __init__(self, posterior, n_samples: int, seed: int, importance: bool = False):
        from .data.preparation import preparation_record

        self.posterior = posterior
        self.importance = bool(importance)
        self.n = int(n_samples)
        if self.n < 1:
            raise XsbiError(f"--samples must be a positive number of posterior draws, got {n_samples}")
        self.seed = int(seed)
        self.names = list(posterior.names)
        self.with_background = bool(getattr(posterior, "background", None))
        self.exposure_conditioned = getattr(posterior, "exposure_range", None) is not None
        self.level_conditioned = getattr(posterior, "background_level_range", None) is not None
        self.preparation = getattr(posterior, "preparation", None) or preparation_record(
            None, posterior.meta["spectrum"]["notice_ranges"])
        self.n_bins = int(posterior.meta["spectrum"]["n_bins"])
        self._sims: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    # --- preparing ------------------------------------------------------------------------------
    def item_from_spectrum(self, index, label, spec) -> _Item:
        """Prepare (group, notice) and check a loaded spectrum; a skipped item on failure."""
        from .data.preparation import prepare_spectrum
        from .inference.posterior import spectrum_identity

        item = _Item(index, label, exposure=float(spec.exposure))
        try:
            spec = prepare_spectrum(spec, self.preparation)
        except XsbiError as exc:
            item.total = int(spec.counts.sum())
            item.reason, item.category = f"cannot be prepared as the training spectrum: {exc}", "preparation failed"
            return item
        item.total = int(spec.counts.sum())
        item.exposure = float(spec.exposure)
        try:
            if hasattr(self.posterior, "observation"):
                x = self.posterior.observation(spec)
            else:
                self.posterior.check_compatible(spec)
                x = spec.counts
        except XsbiError as exc:
            item.reason, item.category = _not_trained(exc)
            return item
        item.x = np.asarray(x, dtype=np.float32)
        item.counts = np.asarray(spec.counts, dtype=np.float64)
        if self.with_background:
            item.background = np.asarray(spec.background_counts, dtype=np.float64)
            item.ratio = np.broadcast_to(np.asarray(spec.background_ratio, dtype=np.float64), item.counts.shape)
        if self.level_conditioned:
            # measured from the spectrum's own background, which check_compatible accepted
            item.level = self.posterior.spectrum_background_level(spec)
        item.setup = _setup_key(spec, spectrum_identity(spec))
        item.spectrum = spec
        return item

    def item_from_file(self, index, path, cache) -> _Item:
        label = str(path)
        if not Path(path).is_file():
            return _Item(index, label, reason=f"file not found: {path}", category="file not found")
        try:
            spec = load_pha(path, cache, background=self.with_background)
        except XsbiError as exc:
            return _Item(index, label, reason=str(exc), category="unreadable file or response")
        except Exception as exc:  # noqa: BLE001 - one bad file must not end a run over thousands
            return _Item(index, label, reason=f"cannot read {path}: {exc.__class__.__name__}: {exc}",
                         category="unreadable file or response")
        return self.item_from_spectrum(index, label, spec)

    def item_from_counts(self, index, label, counts, setup_spec, setup, exposure=None) -> _Item:
        item = _Item(index, label, exposure=float(setup_spec.exposure if exposure is None else exposure))
        problem = self.posterior.exposure_problem(item.exposure) if hasattr(self.posterior, "exposure_problem") else None
        if problem:
            item.reason, item.category = _not_trained(XsbiError(NOT_TRAINED + problem))
            return item
        x = np.asarray(counts)
        # a background network reads the source counts; its background spectrum is the set-up's
        # (the one it was trained with), which may also follow the source counts
        sizes = (self.n_bins, 2 * self.n_bins) if self.with_background else (self.n_bins,)
        if x.ndim != 1 or x.size not in sizes:
            item.reason = f"{x.size} numbers, network trained on {' or '.join(map(str, sizes))}"
            item.category = "binning or band differs"
            return item
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)) or np.any(xf < 0) or np.any(xf != np.rint(xf)):
            item.reason, item.category = "counts must be non-negative integers", "invalid counts"
            return item
        item.counts = xf[: self.n_bins]
        item.x = item.counts.astype(np.float32)
        item.total = int(item.counts.sum())
        if self.with_background:
            trained = np.asarray(setup_spec.background_counts, dtype=np.float64)
            # the source region's share of the background grows with the source exposure
            ratio = np.asarray(setup_spec.background_ratio, dtype=np.float64) * (item.exposure / setup_spec.exposure)
            item.ratio = np.broadcast_to(ratio, item.counts.shape)
            appended = xf[self.n_bins:] if xf.size == 2 * self.n_bins else None
            if self.level_conditioned:
                # any background of the trained shape at a trained level, measured with the set-up's scaling
                item.background = trained if appended is None else appended
                item.level, problems = self.posterior.background_level_problems(item.background, item.ratio,
                                                                                item.exposure)
                if problems:
                    item.reason, item.category = _not_trained(XsbiError(NOT_TRAINED + "; ".join(problems)))
                    return item
            elif appended is not None and not np.array_equal(appended, trained):
                item.reason, item.category = ("not trained for this spectrum: a different background spectrum "
                                              "(the network was trained for the set-up's)"), "background differs"
                return item
            else:
                item.background = trained
        item.setup, item.spectrum = setup, setup_spec
        return item

    # --- inference ------------------------------------------------------------------------------
    def _levels(self, items) -> list[float] | None:
        """Each item's background level, for a network conditioned on it."""
        return [it.level for it in items] if self.level_conditioned else None

    def _seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, int(index)]).generate_state(1)[0])

    def _simulators(self, key, spec):
        from .simulate import Simulator

        with self._lock:
            if key not in self._sims:
                # the model of the network's prior: parameters in its order, frozen ones applied
                model = self.posterior.space.prior.model
                # float32 for every draw (see _Screen), float64 for the few best
                sim64 = Simulator(model, spec, dtype=torch.float64)
                sims = (_Screen(Simulator(model, spec)), sim64)
                sim64._bound_model()  # bind now, not concurrently in two workers
                self._sims[key] = sims
                if len(self._sims) > 8:
                    self._sims.popitem(last=False)
            self._sims.move_to_end(key)
            return self._sims[key]

    def _statistic(self, items, rows, mu):
        """Fit statistic of each row of ``mu`` against its spectrum (``rows`` index ``items``)."""
        from .stats import cstat, wstat

        counts = np.stack([items[r].counts for r in rows])
        if self.with_background:
            bkg = np.stack([items[r].background for r in rows])
            ratio = np.stack([items[r].ratio for r in rows])
            return np.asarray(wstat(counts, bkg, mu, ratio, validate=False))
        return np.asarray(cstat(counts, mu, validate=False))

    def best_fit(self, items, theta, neg_log_like=None) -> np.ndarray:
        """(4, B): C-stat of the best draw, expected C-stat, its sd, deviation in sd (W-stat with
        a background, as ``xsbi run`` reports it).  A (B, n) array ``neg_log_like`` receives
        -log L of every draw (C/2 or W/2, up to a constant per spectrum; inf where undefined)."""
        from .stats import cstat

        B, n, d = theta.shape
        out = np.full((4, B), np.nan)
        groups: dict = {}
        for i, it in enumerate(items):
            groups.setdefault(it.setup, []).append(i)
        n_top = min(4, n)
        for key, idx in groups.items():
            sim32, sim64 = self._simulators(key, items[idx[0]].spectrum)
            th = torch.as_tensor(theta[idx].reshape(-1, d), dtype=torch.float32)
            G = len(idx)
            # the simulators fold for the exposure of the spectrum they were built with
            scale = np.array([items[i].exposure / sim64.exposure for i in idx])
            scaled = bool(np.any(scale != 1.0))
            scale_t = torch.as_tensor(scale, dtype=torch.float32)
            stat = torch.empty(G * n, dtype=torch.float64)
            k = torch.as_tensor(np.stack([items[i].counts for i in idx]), dtype=torch.float32).t().contiguous()
            for r0 in range(0, G * n, _FIT_ROWS):  # a few MB of models at a time: they stay in cache
                r1 = min(G * n, r0 + _FIT_ROWS)
                mu = sim32(th[r0:r1])  # (n_bins, rows)
                spec_of_row = torch.arange(r0, r1) // n
                if scaled:
                    mu.mul_(scale_t[spec_of_row][None, :])
                if self.with_background:
                    rows = [idx[int(r)] for r in spec_of_row]
                    stat[r0:r1] = 0.5 * torch.as_tensor(self._statistic(items, rows, mu.t().double().numpy()))
                else:
                    # C-stat up to a constant of the data: sum(mu - k ln mu); the rows span one or
                    # two spectra, whose counts weigh ln mu in one small matrix product
                    total = mu.sum(0)
                    s0, s1 = r0 // n, (r1 - 1) // n + 1
                    kl = torch.mm(k[:, s0:s1].t(), mu.clamp_(min=1e-30).log_())  # (s1 - s0, rows)
                    own = kl.gather(0, (spec_of_row - s0)[None, :])[0]
                    stat[r0:r1] = (total - own).double()
            stat = stat.view(G, n)
            stat = torch.where(torch.isnan(stat), torch.full_like(stat, math.inf), stat)
            if neg_log_like is not None:
                neg_log_like[idx] = stat.numpy()
            top = torch.topk(stat, n_top, dim=1, largest=False).indices.numpy()  # (G, n_top)
            cand = theta[np.asarray(idx)[:, None], top]  # (G, n_top, d)
            # the few lowest in float32 are compared again in float64: the same choice as
            # PosteriorResult (xsbi run) makes, without its cost for every draw
            mu64 = sim64.expected_counts(cand.reshape(-1, d)).reshape(G, n_top, -1)
            if scaled:
                mu64 = mu64 * scale[:, None, None]
            rows = [i for i in idx for _ in range(n_top)]
            exact = self._statistic(items, rows, mu64.reshape(G * n_top, -1)).reshape(G, n_top)
            exact = np.where(np.isnan(exact), np.inf, exact)
            j = np.argmin(exact, axis=1)
            mu_best = mu64[np.arange(G), j]
            counts = np.stack([items[i].counts for i in idx])
            if self.with_background:
                # as xsbi run: the W-stat, its expectation and spread by parametric bootstrap
                # (Kaastra's exact moments are for the C-stat only)
                from .stats import wstat_goodness

                good = [wstat_goodness(items[i].counts, items[i].background, m, items[i].ratio)
                        for i, m in zip(idx, mu_best)]
                c, expected, std = (np.array([getattr(g, f) for g in good]) for f in ("cstat", "expected", "std"))
            else:
                c = np.asarray(cstat(counts, mu_best, validate=False), dtype=np.float64)
                expected, std = cstat_moments(mu_best)
            out[0, idx], out[1, idx], out[2, idx] = c, expected, std
            with np.errstate(divide="ignore", invalid="ignore"):
                out[3, idx] = (c - expected) / std
        return out

    def process(self, block: list[_Item]) -> list[list]:
        """Table rows (column order) for a block of items, in the block's order."""
        from .inference.maf_batch import MAX_DRAWS_PER_SAMPLE, sample_many

        ok = [it for it in block if it.reason is None]
        q = fit = None
        if ok:
            exposure = [it.exposure for it in ok] if self.exposure_conditioned else None
            theta, failed = sample_many(self.posterior, np.stack([it.x for it in ok]), self.n,
                                        seeds=[self._seed(it.index) for it in ok], return_failed=True,
                                        exposure=exposure, background_level=self._levels(ok))
            if failed.any():
                for it in (it for it, f in zip(ok, failed) if f):
                    it.reason = ("the network puts almost no probability inside the prior for this spectrum "
                                 f"(fewer than 1 in {MAX_DRAWS_PER_SAMPLE} draws): it lies outside what the "
                                 "network was trained on")
                    it.category = "outside the trained prior"
                theta = theta[~failed]
                ok = [it for it in ok if it.reason is None]
        eff = None
        if ok and self.importance:
            theta, gaussians, valid = self._with_defensive_draws(ok, theta)
            nll = np.empty(theta.shape[:2])
            fit = self.best_fit(ok, theta, nll)
            q, eff = self._reweighted_quantiles(ok, theta, nll, gaussians, valid)
            for it, e in zip(ok, eff):
                if e == 0.0:
                    it.reason = ("importance sampling failed: no draw has a finite posterior density (the "
                                 "network misses the posterior of this spectrum)")
                    it.category = "importance sampling failed"
        elif ok:
            q = np.quantile(theta, QUANTILES, axis=1)  # (3, B, d)
            fit = self.best_fit(ok, theta)
        column = {id(it): k for k, it in enumerate(ok)}  # the items' columns in q, fit and eff
        rows = []
        nan3 = [math.nan] * (3 * len(self.names))
        tail = [math.nan] if self.importance else []
        for it in block:
            if it.reason is None:
                k = column[id(it)]
                stats = [float(q[s, k, j]) for j in range(len(self.names)) for s in (1, 0, 2)]
                extra = [float(eff[k])] if self.importance else []
                rows.append([it.label, "ok", "", it.total, it.exposure, *stats, *(float(v) for v in fit[:, k]),
                             *extra])
            else:
                rows.append([it.label, "skipped", it.reason, it.total, it.exposure, *nan3, *([math.nan] * 4),
                             *tail])
        return rows

    # --- importance sampling (optional) -----------------------------------------------------------
    def _with_defensive_draws(self, items, theta):
        """The network's draws followed by a share ``DEFENSIVE`` of draws from a Gaussian twice as wide
        (in the network's coordinates), as :func:`xsbi.inference.importance_resample` does;
        Gaussian draws outside the prior are kept in place, clipped, with zero weight."""
        from .inference.importance import DEFENSIVE, WIDEN, _DefensiveGaussian

        space = self.posterior.space
        lo, hi = space.bounds_phi()
        B, n, d = theta.shape
        n_g = max(1, int(round(n * DEFENSIVE / (1.0 - DEFENSIVE))))
        out = np.empty((B, n + n_g, d))
        out[:, :n] = theta
        valid = np.ones((B, n + n_g), dtype=bool)
        gaussians = []
        for i, it in enumerate(items):
            g = _DefensiveGaussian(space.to_phi(theta[i]), WIDEN)
            phi = g.rvs(n_g, np.random.default_rng([self.seed, it.index, 1]))
            valid[i, n:] = np.all((phi >= lo) & (phi <= hi), axis=1)
            out[i, n:] = space.to_theta(np.clip(phi, lo, hi))
            gaussians.append(g)
        return out, gaussians, valid

    def _reweighted_quantiles(self, items, theta, nll, gaussians, valid):
        """Quantiles (3, B, d) of the draws weighted by likelihood x prior / proposal, and the
        sampling efficiency ESS / draws (B,) (Kish), as ``xsbi run``'s importance sampling."""
        from .inference.importance import mixture_log_density
        from .inference.maf_batch import log_prob_many
        from .likelihood.poisson import weighted_quantiles

        post, space = self.posterior, self.posterior.space
        B, m, d = theta.shape
        n = self.n
        q = np.empty((len(QUANTILES), B, d))
        eff = np.empty(B)
        frac_g = (m - n) / m
        exposure = [it.exposure for it in items] if self.exposure_conditioned else None
        log_nets = log_prob_many(post, np.stack([it.x for it in items]), theta, exposure=exposure,
                                 background_level=self._levels(items))
        for i, it in enumerate(items):
            th, log_net = theta[i], log_nets[i]
            log_q = mixture_log_density(log_net, gaussians[i], space, th, frac_g)
            with np.errstate(invalid="ignore"):
                log_w = -nll[i] + space.prior.log_prob(th) - log_q
            log_w = np.where(valid[i] & np.isfinite(log_w), log_w, -np.inf)
            if not np.isfinite(log_w).any():  # no draw with a finite posterior density: nothing to weigh
                q[:, i], eff[i] = np.nan, 0.0
                continue
            w = np.exp(log_w - log_w.max())
            w /= w.sum()
            eff[i] = 1.0 / np.sum(w**2) / m
            q[:, i] = weighted_quantiles(th, w, QUANTILES)
        return q, eff


# ------------------------------------------------------------------------------------ expected C-stat
class _CstatMoments:
    """Expected C-stat and its variance per bin (Kaastra 2017), from the exact sums of
    :mod:`xsbi.stats.expected` tabulated once on a fine log grid of the model counts and
    interpolated (relative error < 1e-6); outside the grid the exact functions are called."""

    LO, HI, N = 1e-6, 1000.0, 6001

    def __init__(self):
        from .stats import cstat_variance, expected_cstat

        self.log_m = np.linspace(math.log(self.LO), math.log(self.HI), self.N)
        m = np.exp(self.log_m)
        self.mean = np.asarray(expected_cstat(m, per_bin=True), dtype=np.float64)
        self.var = np.asarray(cstat_variance(m, per_bin=True), dtype=np.float64)

    def __call__(self, mu) -> tuple[np.ndarray, np.ndarray]:
        from .stats import cstat_variance, expected_cstat

        mu = np.asarray(mu, dtype=np.float64)
        mean = np.zeros_like(mu)
        var = np.zeros_like(mu)
        inside = (mu >= self.LO) & (mu <= self.HI)
        lm = np.log(mu[inside])
        mean[inside] = np.interp(lm, self.log_m, self.mean)
        var[inside] = np.interp(lm, self.log_m, self.var)
        other = ~inside & (mu > 0) & np.isfinite(mu)
        if other.any():
            mean[other] = expected_cstat(mu[other], per_bin=True)
            var[other] = cstat_variance(mu[other], per_bin=True)
        bad = ~np.isfinite(mu) | (mu < 0)
        mean[bad] = np.nan
        var[bad] = np.nan
        return mean.sum(-1), np.sqrt(var.sum(-1))


_MOMENTS: _CstatMoments | None = None
_MOMENTS_LOCK = threading.Lock()


def cstat_moments(mu) -> tuple[np.ndarray, np.ndarray]:
    """(expected C-stat, its standard deviation) for model counts ``mu`` (..., n_bins)."""
    global _MOMENTS
    with _MOMENTS_LOCK:
        if _MOMENTS is None:
            _MOMENTS = _CstatMoments()
    return _MOMENTS(mu)


# ------------------------------------------------------------------------------------ writing
def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    return "" if math.isnan(v) else repr(v)


def _ascii(s: str) -> bytes:
    return s.encode("ascii", "backslashreplace")


class TableWriter:
    """Rows to ``TABLE.csv`` as they come (flushed after each block); ``close()`` streams the CSV
    into the FITS binary table ``TABLE.fits`` (extension ``BATCH``) in chunks."""

    def __init__(self, out, names, header: dict | None = None, importance: bool = False):
        self.csv_path, self.fits_path = table_paths(out)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = table_columns(names, importance)
        self.header = dict(header or {})
        self.n_rows = 0
        self.widths = {c: 1 for c in STRING_COLUMNS}
        self._fh = open(self.csv_path, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(self.columns)

    def write(self, rows) -> None:
        for row in rows:
            for c in STRING_COLUMNS:
                i = self.columns.index(c)
                self.widths[c] = max(self.widths[c], len(_ascii(row[i])))
            self._csv.writerow([_fmt(v) for v in row])
        self.n_rows += len(rows)
        self._fh.flush()

    def close(self, extra_header: dict | None = None) -> None:
        self._fh.close()
        self.header.update(extra_header or {})
        csv_to_fits(self.csv_path, self.fits_path, self.columns, self.n_rows, self.widths, self.header)


def _fits_layout(columns, widths):
    from astropy.io import fits

    cols, dtype = [], []
    for c in columns:
        if c in STRING_COLUMNS:
            w = max(1, int(widths.get(c, 1)))
            cols.append(fits.Column(name=c, format=f"{w}A"))
            dtype.append((c, f"S{w}"))
        elif c == "counts":
            cols.append(fits.Column(name=c, format="K", null=-1, unit="count"))
            dtype.append((c, ">i8"))
        else:
            cols.append(fits.Column(name=c, format="D", unit="s" if c == "exposure" else None))
            dtype.append((c, ">f8"))
    return cols, np.dtype(dtype)


def csv_to_fits(csv_path, fits_path, columns, n_rows, widths, header=None, chunk: int = 10_000) -> Path:
    """Write the batch CSV as a FITS binary table without holding it in memory."""
    from astropy.io import fits

    cols, dtype = _fits_layout(columns, widths)
    hdu = fits.BinTableHDU.from_columns(cols, nrows=0, name="BATCH")
    h = hdu.header
    if h["NAXIS1"] != dtype.itemsize:  # pragma: no cover - a layout astropy would pad
        raise RuntimeError(f"FITS row of {h['NAXIS1']} bytes, expected {dtype.itemsize}")
    h["NAXIS2"] = int(n_rows)
    for key, value in (header or {}).items():
        h[key] = value
    primary = fits.PrimaryHDU()
    primary.header["CREATOR"] = h.get("CREATOR", "xsbi")
    fits_path = Path(fits_path)
    written = 0
    with open(fits_path, "wb") as f, open(csv_path, newline="", encoding="utf-8") as src:
        f.write(primary.header.tostring().encode("ascii"))
        f.write(h.tostring().encode("ascii"))
        reader = csv.reader(src)
        names = next(reader)
        if names != list(columns):
            raise DataError(f"{csv_path}: unexpected columns {names}")
        kinds = ["s" if c in STRING_COLUMNS else "i" if c == "counts" else "f" for c in columns]
        buf = np.zeros(chunk, dtype=dtype)
        n = 0

        def flush(n):
            f.write(buf[:n].tobytes())

        for line in reader:
            rec = buf[n]
            for c, kind, v in zip(columns, kinds, line):
                if kind == "s":
                    rec[c] = _ascii(v)
                elif kind == "i":
                    rec[c] = int(v) if v else -1
                else:
                    rec[c] = float(v) if v else math.nan
            n += 1
            written += 1
            if n == chunk:
                flush(n)
                n = 0
        if n:
            flush(n)
        size = written * dtype.itemsize
        f.write(b"\0" * (-size % 2880))
    if written != n_rows:
        raise RuntimeError(f"{csv_path}: {written} rows, expected {n_rows}")
    return fits_path


# ------------------------------------------------------------------------------------ driving
@dataclass
class BatchResult:
    """What a batch run did: counts of rows, reasons for skipping, where the table is."""

    ok: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    csv: Path | None = None
    fits: Path | None = None
    seconds: float = 0.0
    response_loads: dict = field(default_factory=dict)
    rows: list | None = None  # only when no output file was given
    columns: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.skipped

    def line(self) -> str:
        """One-line summary: N ok, M skipped (reasons counted)."""
        text = f"{self.ok} ok, {self.skipped} skipped"
        if self.reasons:
            text += " (" + ", ".join(f"{n} {r}" for r, n in self.reasons.most_common()) + ")"
        rate = self.total / self.seconds if self.seconds > 0 else float("nan")
        return text + f" in {self.seconds:.1f} s ({rate:.0f} spectra/s)"


def _load_network(network):
    from .inference import AmortizedPosterior

    if isinstance(network, (str, Path)):
        return AmortizedPosterior.load(network), str(network)
    return network, "(in memory)"


def _prefetch(make_items, size: int):
    """Iterate ``make_items()`` in a background thread, ``size`` items ahead, in order."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in make_items():
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put(("__error__", exc))

    t = threading.Thread(target=work, name="xsbi-batch-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "__error__":
                raise item[1]
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


class _torch_threads:
    """Intra-op torch threads set for a block of code, restored after."""

    def __init__(self, n: int):
        self.n = int(n)

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def _blocks(items, size):
    block = []
    for item in items:
        block.append(item)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


def _outcomes(block) -> list:
    """Per spectrum of a block: None when it got a row of results, else why it was skipped."""
    return [None if it.reason is None else (it.category or it.reason) for it in block]


# --- worker processes: each reads, samples and fits whole blocks on one core, so that the reading
# (Python code holding the interpreter lock) does not stall the other workers as threads do
_STATE: dict | None = None  # the parent's engine and readers, inherited by the forked workers


def _use_processes(workers: int) -> bool:
    import multiprocessing as mp

    # fork shares the loaded network and responses with the workers without copying or pickling
    # them; it is Linux's default and safe there (macOS frameworks are not fork-safe: threads there)
    return workers > 1 and sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def _init_worker(state) -> None:
    import signal

    global _STATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the pool
    torch.set_num_threads(1)
    _STATE = state


def _work(task, state=None):
    """One block (in a worker process): its rows, the outcome per spectrum and the files it read."""
    state = _STATE if state is None else state
    engine, cache = state["engine"], state["cache"]
    before = Counter(cache.loads) if cache is not None else Counter()
    block = state["make"](engine, cache, task)
    rows = engine.process(block)
    return rows, _outcomes(block), dict(cache.loads - before) if cache is not None else {}


def _file_block(engine, cache, task) -> list:
    start, paths = task
    return [engine.item_from_file(start + k, p, cache) for k, p in enumerate(paths)]


def _counts_block(engine, cache, task, spectrum=None, setup=None) -> list:
    start, labels, counts, exposures = task
    return [engine.item_from_counts(start + k, lab, c, spectrum, setup, t)
            for k, (lab, c, t) in enumerate(zip(labels, counts, exposures))]


def _run_processes(state, tasks, workers, consume) -> None:
    import multiprocessing as mp
    import warnings
    from collections import deque

    tasks = iter(tasks)
    first = next(tasks, None)
    if first is None:
        return
    # the first block runs here: the workers inherit what it built (the simulators of its
    # response, the C-stat tables, torch's lazy state) instead of each building its own
    consume(*_work(first, state))
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork in a process with threads; ours hold no lock at this point
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(state,))
    try:
        pending: deque = deque()  # at most 2 blocks per worker in flight: memory stays flat
        for task in tasks:
            pending.append(pool.apply_async(_work, (task,)))
            while len(pending) > 2 * workers:
                consume(*pending.popleft().get())
        while pending:
            consume(*pending.popleft().get())
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _drive(engine, out, header, progress, total, batch_size, workers, items=None, tasks=None,
           make=None, cache=None) -> BatchResult:
    """Rows for ``tasks`` (blocks that ``make(engine, cache, task)`` turns into items) computed by
    ``workers`` forked processes, or for ``items`` in this process (``workers`` > 1: threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    result = BatchResult(columns=table_columns(engine.names, engine.importance))
    writer = TableWriter(out, engine.names, header, engine.importance) if out is not None else None
    if writer is None:
        result.rows = []
    else:
        result.csv, result.fits = writer.csv_path, writer.fits_path
    use_processes = tasks is not None
    bar = None
    loads: Counter = Counter()  # response files read by the workers

    def consume(rows, outcomes, read=None):
        for why in outcomes:
            if why is None:
                result.ok += 1
            else:
                result.skipped += 1
                result.reasons[why] += 1
        if read:
            loads.update(read)
        if writer is not None:
            writer.write(rows)
        else:
            result.rows.extend(rows)
        bar.update(len(outcomes))

    try:
        if use_processes:
            state = {"engine": engine, "cache": cache, "make": make}
            # the bar's monitor thread starts after the fork
            bar = tqdm(total=total, unit="spectrum", desc="xsbi batch", disable=not progress)
            _run_processes(state, tasks, workers, consume)
        else:
            bar = tqdm(total=total, unit="spectrum", desc="xsbi batch", disable=not progress)
            if workers <= 1:
                for block in _blocks(items, batch_size):
                    consume(engine.process(block), _outcomes(block))
            else:
                # threads (no fork): blocks run concurrently on single-threaded torch (its kernels
                # release the interpreter lock); results are written in input order
                from collections import deque

                with _torch_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="xsbi-batch") as pool:
                    pending: deque = deque()
                    for block in _blocks(items, batch_size):
                        pending.append((block, pool.submit(engine.process, block)))
                        while len(pending) > 2 * workers:
                            b, fut = pending.popleft()
                            consume(fut.result(), _outcomes(b))
                    while pending:
                        b, fut = pending.popleft()
                        consume(fut.result(), _outcomes(b))
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close({"NOK": (result.ok, "spectra with posterior summaries"),
                          "NSKIP": (result.skipped, "spectra skipped (see column reason)")})
    result.response_loads = dict(loads if use_processes else cache.loads if cache is not None else {})
    result.seconds = time.perf_counter() - t0
    return result


def _workers(workers) -> int:
    if workers is None:
        return max(1, torch.get_num_threads())
    if int(workers) < 1:
        raise XsbiError(f"workers must be at least 1 (1: a single process), got {workers}")
    return int(workers)


def _tasks(iterable, size):
    """``(start, block)`` for consecutive blocks of ``size`` from ``iterable``, lazily."""
    start = 0
    for block in _blocks(iterable, size):
        yield start, block
        start += len(block)


def _header(engine, network_label, **extra) -> dict:
    from .record import versions

    h = {"NETWORK": network_label, "NSAMPLES": (engine.n, "posterior draws per spectrum"),
         "SEED": (engine.seed, "seed of the draws"), "QUANTS": ("0.16 0.5 0.84", "quantiles q16 median q84"),
         "BESTFIT": ("wstat" if engine.with_background else "cstat", "statistic of the best fit and cstat columns"),
         "IMPORTNC": (engine.importance, "draws reweighted by the exact likelihood"),
         "CREATOR": f"xsbi {versions().get('xsbi', '')}"}
    h.update(extra)
    return h


def run_batch(network, spectra, out, n_samples: int = 1000, seed: int = 0, progress: bool = True,
              batch_size: int = 32, prefetch: int = 128, workers: int | None = None,
              importance: bool = False) -> BatchResult:
    """Apply a saved amortized network to PHA files, one table row per file, in input order.

    Parameters
    ----------
    network : path or AmortizedPosterior
        ``network.pt`` of an ``xsbi run`` (method npe), or a loaded posterior.
    spectra : iterable of paths
        PHA files (RESPFILE/ANCRFILE resolved as :func:`xsbi.data.load_spectrum` does); consumed
        lazily, so a generator over millions of files is fine.
    out : path or None
        Table path stem: writes ``out.csv`` (row by row) and ``out.fits`` (at the end).  None keeps
        the rows in ``BatchResult.rows`` instead (for small batches).
    n_samples : int
        Posterior draws per spectrum.
    seed : int
        Each spectrum's draws depend on ``seed`` and its position in the input only.
    batch_size : int
        Spectra per block of the network and simulator.
    prefetch : int
        Without worker processes: spectra read ahead in a background thread (0: read in the main
        thread).
    workers : int or None
        Blocks processed concurrently, each on one core by single-threaded torch: forked worker
        processes on Linux, threads elsewhere.  Default: torch's number of threads
        (``torch.get_num_threads()``, the physical cores unless set); 1 runs blocks one after the
        other in this process with torch's own threads.  The rows do not depend on it (up to
        float32 rounding).
    importance : bool
        Reweight each spectrum's draws by the exact likelihood times the prior over the proposal
        density (the network mixed with a Gaussian twice as wide, 20% of draws added: neural
        importance sampling as in ``xsbi run``), so the quantiles are those of the exact
        posterior up to Monte-Carlo noise; adds the column ``is_efficiency`` (ESS / draws).
    """
    posterior, label = _load_network(network)
    engine = _Engine(posterior, n_samples, seed, importance)
    cache = ResponseCache()
    total = len(spectra) if hasattr(spectra, "__len__") else None
    workers = _workers(workers)
    header = _header(engine, label)
    if _use_processes(workers):
        return _drive(engine, out, header, progress, total, batch_size, workers,
                      tasks=_tasks(spectra, batch_size), make=_file_block, cache=cache)

    def make_items():
        for i, path in enumerate(spectra):
            yield engine.item_from_file(i, path, cache)

    items = _prefetch(make_items, prefetch) if prefetch else make_items()
    try:
        return _drive(engine, out, header, progress, total, batch_size, workers, items=items, cache=cache)
    finally:
        items.close()  # stops the reader thread if the run ended early


def run_batch_counts(network, counts, spectrum, out=None, n_samples: int = 1000, seed: int = 0,
                     progress: bool = False, batch_size: int = 32, labels=None, workers: int | None = None,
                     exposures=None, importance: bool = False) -> BatchResult:
    """Apply a network to in-memory spectra: grouped counts in the network's bins.

    ``counts`` is an iterable of ``(n_bins,)`` source counts, all observed with ``spectrum``'s
    set-up (a prepared Spectrum the network was trained for, e.g. the training spectrum: it gives
    the response for the best fit, and is checked once).  A network trained with a background
    was trained for ``spectrum``'s background spectrum, which the best fit's W-stat uses; an
    array of ``2 n_bins`` (source then background counts) is accepted when its background is
    that one, and skipped as "background differs" otherwise; for a network conditioned on the
    background level the appended background may be any of the trained shape at a level in the
    trained range (measured with ``spectrum``'s background scaling).  Rows are labelled ``labels[i]`` or ``#i``;
    ``exposures[i]`` (s) is spectrum i's exposure (default ``spectrum.exposure``): a network
    conditioned on exposure reads it, and a spectrum outside the trained exposures is skipped.
    Otherwise as :func:`run_batch`.
    """
    from .inference.posterior import spectrum_identity

    posterior, label = _load_network(network)
    engine = _Engine(posterior, n_samples, seed, importance)
    posterior.check_compatible(spectrum)
    setup = _setup_key(spectrum, spectrum_identity(spectrum))
    total = len(counts) if hasattr(counts, "__len__") else None

    workers = _workers(workers)
    make = functools.partial(_counts_block, spectrum=spectrum, setup=setup)

    def tasks():
        names = iter(labels) if labels is not None else None
        times = iter(exposures) if exposures is not None else None
        for start, block in _tasks(counts, batch_size):
            yield (start, [str(next(names)) if names is not None else f"#{start + k}" for k in range(len(block))],
                   block, [float(next(times)) if times is not None else None for _ in block])

    header = _header(engine, label)
    if _use_processes(workers):
        engine._simulators(setup, spectrum)  # built once here, shared by the forked workers
        return _drive(engine, out, header, progress, total, batch_size, workers, tasks=tasks(), make=make)
    items = (it for task in tasks() for it in make(engine, None, task))
    return _drive(engine, out, header, progress, total, batch_size, workers, items=items)
