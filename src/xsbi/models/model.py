"""A spectral model built from an XSPEC expression, with free and frozen parameters."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from ..errors import ModelError
from .component import Component, Kernel, get_component
from .expression import Term, parse_expression
from .grid import EnergyGrid
from .parameter import ParameterSpec


class Model:
    """An XSPEC-style model such as ``Model("tbabs*(powerlaw+bbodyrad)")``.

    Parameters are addressed as ``component.parameter`` (``powerlaw.PhoIndex``).  Every parameter
    starts free at its XSPEC default; :meth:`freeze` fixes one.  :attr:`parameter_names` lists the
    free ones, in the order of the columns of the ``theta`` arrays used everywhere in xsbi.

    Models combine with ``*`` and ``+`` like their expressions: ``Model("tbabs") * Model("powerlaw")``.

    Parameters
    ----------
    expression : str
        XSPEC model expression.
    options : mapping, optional
        Per-component options, e.g. ``{"tbabs": {"table": "xsect_tbabs_wilm.fits"}}``.
    """

    def __init__(self, expression: str, options: Mapping[str, Mapping] | None = None):
        self.expression = expression.strip()
        self.options = {k.lower(): dict(v) for k, v in (options or {}).items()}
        names, labels, self.terms = parse_expression(self.expression, lambda n: get_component(n).kind)
        self.components: dict[str, Component] = {
            lab: get_component(n)(**self.options.get(lab, {})) for n, lab in zip(names, labels)
        }
        self._specs: dict[str, ParameterSpec] = {
            f"{lab}.{p.name}": p for lab, comp in self.components.items() for p in comp.parameters
        }
        self._values = {name: spec.default for name, spec in self._specs.items()}
        self._frozen: set[str] = set()

    # --- parameters ---------------------------------------------------------------------------
    @property
    def all_parameter_names(self) -> list[str]:
        return list(self._specs)

    @property
    def parameter_names(self) -> list[str]:
        """Free parameters, in theta column order."""
        return [n for n in self._specs if n not in self._frozen]

    @property
    def n_free(self) -> int:
        return len(self.parameter_names)

    @property
    def frozen(self) -> dict[str, float]:
        return {n: self._values[n] for n in self._specs if n in self._frozen}

    def _resolve(self, name: str) -> str:
        if name in self._specs:
            return name
        # accept case-insensitive names and a bare parameter name when it is unambiguous
        lowered = {n.lower(): n for n in self._specs}
        if name.lower() in lowered:
            return lowered[name.lower()]
        matches = [n for n in self._specs if n.split(".", 1)[1].lower() == name.lower()]
        if len(matches) == 1:
            return matches[0]
        raise ModelError(
            f"model '{self.expression}' has no parameter '{name}'"
            + (" (ambiguous: " + ", ".join(matches) + ")" if matches else "")
            + f"; its parameters are: {', '.join(self._specs)}"
        )

    def spec(self, name: str) -> ParameterSpec:
        return self._specs[self._resolve(name)]

    def value(self, name: str) -> float:
        return self._values[self._resolve(name)]

    def set(self, name: str, value: float) -> "Model":
        """Set a parameter's value (the value used while it is frozen)."""
        key = self._resolve(name)
        self._specs[key].check(float(value))
        self._values[key] = float(value)
        return self

    def freeze(self, name: str, value: float | None = None) -> "Model":
        """Freeze a parameter, at ``value`` if given (else at its current value)."""
        key = self._resolve(name)
        if value is not None:
            self.set(key, value)
        self._frozen.add(key)
        return self

    def thaw(self, name: str) -> "Model":
        self._frozen.discard(self._resolve(name))
        return self

    # --- composition ----------------------------------------------------------------------------
    def _combine(self, other: "Model", op: str) -> "Model":
        if not isinstance(other, Model):
            return NotImplemented
        out = Model(f"({self.expression}){op}({other.expression})", {**other.options, **self.options})
        # carry over settings whose names survive relabelling (left operand keeps its labels)
        for src in (other, self):
            for name in src._frozen:
                if name in out._specs:
                    out.freeze(name, src._values[name])
        return out

    def __mul__(self, other):
        return self._combine(other, "*")

    def __add__(self, other):
        return self._combine(other, "+")

    def __repr__(self) -> str:
        frozen = ", ".join(f"{k}={v:g}" for k, v in self.frozen.items())
        return f"Model('{self.expression}'" + (f", frozen: {frozen}" if frozen else "") + ")"

    def record(self) -> dict:
        """What a run's record needs to reproduce this model."""
        return {
            "expression": self.expression,
            "free": self.parameter_names,
            "frozen": self.frozen,
            "components": [c.describe() for c in self.components.values()],
        }

    # --- evaluation -----------------------------------------------------------------------------
    @property
    def is_multiplicative(self) -> bool:
        """True for a model with no additive component (only usable as a factor: ``tbabs * ...``)."""
        return self.terms[0].additive is None

    def bind(self, energ_lo, energ_hi, device="cpu", dtype=torch.float32) -> "BoundModel":
        """Prepare batched evaluation on an energy grid (see :class:`BoundModel`)."""
        if self.is_multiplicative:
            raise ModelError(
                f"model '{self.expression}' has no additive component, so it emits no photons; "
                f"multiply it with one, e.g. '{self.expression}*powerlaw'"
            )
        return BoundModel(self, EnergyGrid(energ_lo, energ_hi), device, dtype)

    def evaluate(self, theta, energ_lo, energ_hi, dtype=torch.float64) -> np.ndarray:
        """Photon flux per energy bin (photons/cm^2/s), shape (N, n_E), as a numpy array."""
        bound = self.bind(energ_lo, energ_hi, dtype=dtype)
        theta = torch.as_tensor(np.atleast_2d(np.asarray(theta, dtype=np.float64)), dtype=dtype)
        return bound(theta).cpu().numpy()


class BoundModel:
    """A model bound to an energy grid, device and dtype: ``bound(theta) -> (N, n_E)`` flux.

    The returned tensor may be a transposed (non-contiguous) view.
    """

    def __init__(self, model: Model, grid: EnergyGrid, device, dtype):
        self.model = model
        self.grid = grid
        self.device = torch.device(device)
        self.dtype = dtype
        self.names = model.parameter_names
        self.frozen = model.frozen
        self.kernels: dict[str, Kernel] = {
            lab: comp.kernel(grid, self.device, dtype) for lab, comp in model.components.items()
        }
        self._feature_cache: dict[tuple[str, ...], torch.Tensor] = {}

    def params(self, theta: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Split theta (N, n_free) into per-component dicts of (N,) tensors, frozen ones filled."""
        if theta.ndim != 2 or theta.shape[1] != len(self.names):
            raise ModelError(
                f"theta must have shape (N, {len(self.names)}) with columns {self.names}; got {tuple(theta.shape)}"
            )
        n = theta.shape[0]
        out: dict[str, dict[str, torch.Tensor]] = {lab: {} for lab in self.kernels}
        for i, name in enumerate(self.names):
            lab, par = name.split(".", 1)
            out[lab][par] = theta[:, i]
        for name, v in self.frozen.items():
            lab, par = name.split(".", 1)
            out[lab][par] = torch.full((n,), v, dtype=self.dtype, device=self.device)
        return out

    def _features(self, labels: tuple[str, ...]) -> torch.Tensor:
        """(n_E, k) energy features of these kernels, concatenated."""
        if labels not in self._feature_cache:
            feats = torch.cat([self.kernels[lab].energy_features for lab in labels], 0)
            self._feature_cache[labels] = feats.t().contiguous()
        return self._feature_cache[labels]

    def _term(self, term: Term, p) -> torch.Tensor:
        labels = term.multiplicative + (term.additive,)
        fast = tuple(lab for lab in labels if self.kernels[lab].log_linear_ok(p[lab]))
        out = None
        if fast:
            feats = torch.cat([self.kernels[lab].spectrum_features(p[lab]) for lab in fast], 1)
            # computed as (n_E, N) and returned as its transposed view: the thin-K matrix product
            # is twice as fast in this orientation, and folding reads energy rows contiguously
            out = (self._features(fast) @ feats.t()).exp_().t()
        for lab in labels:
            if lab not in fast:
                v = self.kernels[lab].value(p[lab])
                out = v if out is None else out * v
        return out

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        p = self.params(theta)
        total = None
        for term in self.model.terms:
            v = self._term(term, p)
            total = v if total is None else total + v
        return total


