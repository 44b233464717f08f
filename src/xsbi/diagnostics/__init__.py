"""Diagnostics across runs: comparisons of inference methods on the same spectrum."""

from .compare import (Run, c2st_score, check_compatible, compare_runs, format_table, load_run,  # noqa: F401
                      load_runs, write_comparison)
from .calibration import expected_coverage, rank_uniformity, sbc_ranks, tarp, validate  # noqa: F401
