#!/usr/bin/env bash
# 4U 1820-30, NICER: the persistent emission before the burst (pre_burst.yaml, seed paper section 8.2).
# Restricted prior (lowest-C-stat classifier), single-round NPE, 3-round NPE, emcee and UltraNest on
# the same spectrum and priors, then `xsbi compare` with MCMC as the reference.
#
#   examples/nicer_4u1820/run_pre_burst.sh                      # npe, snpe, mcmc, nested (README.md: run times)
#   METHODS="npe mcmc" examples/nicer_4u1820/run_pre_burst.sh   # a subset
#   examples/nicer_4u1820/run_pre_burst.sh --set inference.simulations=2000   # extra `xsbi run` arguments
#
# Results: examples/nicer_4u1820/results/pre_burst/<method>/ and .../compare/ (OUT=DIR to change).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run_case.sh" pre_burst "npe snpe mcmc nested" "$@"
