#!/usr/bin/env bash
# 4U 1820-30, NICER: one 0.25 s spectrum of the burst, b_008 (burst.yaml, seed paper section 8.3, Table 1
# model 3: nH and PhoIndex frozen).  Counts-window restricted prior, single-round NPE, emcee and
# UltraNest on the same spectrum and priors, then `xsbi compare` with MCMC as the reference.
#
#   examples/nicer_4u1820/run_burst.sh                           # npe, mcmc, nested (see README.md for run times)
#   METHODS="npe snpe mcmc nested" examples/nicer_4u1820/run_burst.sh   # with 3-round NPE too
#   examples/nicer_4u1820/run_burst.sh --set inference.simulations=2000   # extra `xsbi run` arguments
#
# Results: examples/nicer_4u1820/results/burst/<method>/ and .../compare/ (OUT=DIR to change).
# The whole burst followed with one amortized network: burst_sequence.py (README.md).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run_case.sh" burst "npe mcmc nested" "$@"
