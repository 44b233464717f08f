#!/usr/bin/env bash
# NGC 7793 ULX-4 (XMM-Newton EPIC-pn, with background): NPE against the W-stat likelihood methods.
# Usage: examples/xmm_pn/run.sh [OUTDIR]   (default: examples/xmm_pn/results)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/results}"
xsbi="$(command -v xsbi || echo "$here/../../.venv/bin/xsbi")"
for method in npe mcmc nested; do
    "$xsbi" run "$here/pn_diskbb.yaml" --method "$method" --out "$out/$method" --quiet
done
"$xsbi" compare "$out/mcmc" "$out/npe" "$out/nested" --out "$out/compare"
