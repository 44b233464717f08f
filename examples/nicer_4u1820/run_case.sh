#!/usr/bin/env bash
# Runs `xsbi run CASE.yaml` with each method of $METHODS into $OUT/<method>/, then `xsbi compare`
# with MCMC as the reference.  Called by run_pre_burst.sh and run_burst.sh:
#   run_case.sh CASE DEFAULT_METHODS [extra `xsbi run` arguments...]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CASE="$1"; DEFAULT_METHODS="$2"; shift 2
if [[ -n "${XSBI:-}" ]]; then :
elif command -v xsbi >/dev/null 2>&1; then XSBI=xsbi
elif [[ -x "$ROOT/.venv/bin/xsbi" ]]; then XSBI="$ROOT/.venv/bin/xsbi"
else echo "xsbi not found: install it (make demo creates .venv) or set XSBI=/path/to/xsbi" >&2; exit 1
fi
# One torch thread: the networks here are small, and on shared cores two threads train several times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

OUT="${OUT:-$HERE/results/$CASE}"
METHODS="${METHODS:-$DEFAULT_METHODS}"
mkdir -p "$OUT"

for m in $METHODS; do
    echo "=== xsbi run $CASE.yaml --method $m --out $OUT/$m"
    start=$SECONDS
    "$XSBI" run "$HERE/$CASE.yaml" --method "$m" --out "$OUT/$m" --quiet "$@"
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
