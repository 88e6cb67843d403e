#!/usr/bin/env bash
# Run the live-mode SIGKILL test (#14) over and over until it fails or N runs pass.
#   scripts/sigkill-loop.sh [N]      (default 20; needs `make install`)
# Prints one line per run and the count of passes before the first failure; the failing
# run's worker and broker logs are in loop-<n>.log.
set -u
cd "$(dirname "$0")/.."
n=${1:-20}
for i in $(seq 1 "$n"); do
  if .venv/bin/pytest -q -x -p no:cacheprovider tests/integration/test_live_trust.py \
       -k sigkill_in_live_mode > "loop-$i.log" 2>&1; then
    echo "run $i: pass"; rm -f "loop-$i.log"
  else
    echo "run $i: FAIL (see loop-$i.log)"; echo "passed $((i - 1)) runs before the first failure"; exit 1
  fi
done
echo "passed all $n runs"
