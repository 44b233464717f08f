"""Parameter metadata in XSPEC conventions (name, unit, default, hard limits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a spectral component, as XSPEC's ``model.dat`` describes it.

    ``hard_min``/``hard_max`` are the limits outside which the component is undefined (XSPEC's
    hard limits); priors must stay inside them.
    """

    name: str
    unit: str
    default: float
    hard_min: float
    hard_max: float
    doc: str = ""

    def check(self, value: float) -> None:
        from ..errors import ModelError

        if not (self.hard_min <= value <= self.hard_max):
            raise ModelError(
                f"{self.name} = {value} is outside its hard limits "
                f"[{self.hard_min}, {self.hard_max}] {self.unit}; choose a value inside them."
            )
