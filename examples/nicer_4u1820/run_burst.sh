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

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -n "${XSBI:-}" ]]; then :
elif command -v xsbi >/dev/null 2>&1; then XSBI=xsbi
elif [[ -x "$ROOT/.venv/bin/xsbi" ]]; then XSBI="$ROOT/.venv/bin/xsbi"
else echo "xsbi not found: install it (make demo creates .venv) or set XSBI=/path/to/xsbi" >&2; exit 1
fi
# One torch thread: the networks here are small, and on shared cores two threads train several times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

OUT="${OUT:-$HERE/results/burst}"
METHODS="${METHODS:-npe mcmc nested}"
mkdir -p "$OUT"

for m in $METHODS; do
    echo "=== xsbi run burst.yaml --method $m --out $OUT/$m"
    start=$SECONDS
    "$XSBI" run "$HERE/burst.yaml" --method "$m" --out "$OUT/$m" --quiet "$@"
    echo "=== $m: $((SECONDS - start)) s"
done

# compare every run present, MCMC first (the reference)
runs=()
for m in mcmc nested npe snpe; do
    if [[ -f "$OUT/$m/summary.json" ]]; then runs+=("$OUT/$m"); fi
done
if (( ${#runs[@]} >= 2 )); then
    "$XSBI" compare "${runs[@]}" --out "$OUT/compare"
else
    echo "fewer than two runs in $OUT: nothing to compare"
fi
