#!/usr/bin/env bash
# Run every atheris target for SECONDS each, in parallel, and print executions/s.
#   bash fuzz/run.sh 600            # 10 minutes per target
#   FUZZ_TARGETS="sdp rtp" bash fuzz/run.sh 30
# Work corpora and crash artifacts go to $FUZZ_WORK (default /tmp/sessiond-fuzz); the seed
# corpora are regenerated from the test fixtures on every run. Exit 1 if any target crashed.
set -u
SECONDS_PER_TARGET=${1:?usage: fuzz/run.sh SECONDS}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${FUZZ_WORK:-/tmp/sessiond-fuzz}
TARGETS=${FUZZ_TARGETS:-"sip_message sip_framer edge_path sdp rtp"}
export PYTHONPATH="$ROOT/service${PYTHONPATH:+:$PYTHONPATH}"

python -c "import atheris" 2>/dev/null || { echo "atheris missing: pip install atheris" >&2; exit 2; }
rm -rf "$WORK/seeds"
python "$HERE/seeds.py" "$WORK/seeds" || exit 2

pids=()
for t in $TARGETS; do
  mkdir -p "$WORK/corpus/$t" "$WORK/crashes/$t"
  timeout --kill-after=30 $((SECONDS_PER_TARGET + 120)) \
    python "$HERE/fuzz_$t.py" "$WORK/corpus/$t" "$WORK/seeds/$t" \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$WORK/crashes/$t/" \
      >"$WORK/$t.log" 2>&1 &
  pids+=($!)
done
status=0
i=0
for t in $TARGETS; do
  wait "${pids[$i]}" || status=1
  i=$((i + 1))
done

printf '%-12s %10s %12s %8s %s\n' target seconds executions exec/s outcome
for t in $TARGETS; do
  log="$WORK/$t.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(find "$WORK/crashes/$t" -type f | wc -l)
  if [ "$crashes" -gt 0 ] || grep -q "Uncaught Python exception\|ERROR: libFuzzer" "$log"; then
    outcome="CRASH ($crashes artifacts in $WORK/crashes/$t, see $log)"
    status=1
  else
    outcome="no crash"
  fi
  printf '%-12s %10s %12s %8s %s\n' "$t" "$SECONDS_PER_TARGET" "${runs:-?}" "${rate:-?}" "$outcome"
done
exit $status
