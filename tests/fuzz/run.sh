#!/bin/sh
# Runs the fuzz targets for "make fuzz-check".
#
#   run.sh SRCDIR WORKDIR TARGET...
#
# For each TARGET (a path like tests/fuzz_protocol): replays every input in
# SRCDIR/regress/NAME/ (each must run clean), then fuzzes for FUZZ_SECONDS
# (default 30) on a fresh copy of SRCDIR/corpus/NAME/, with
# SRCDIR/NAME.dict when there is one.  One line per target says how many
# inputs it ran; a failure prints the end of the target's log and where
# the crashing input was saved.  Exit status 1 if any target failed.
set -u
src=$1
work=$2
shift 2
seconds=${FUZZ_SECONDS:-30}
status=0

for target in "$@"; do
  name=$(basename "$target")
  dir=$work/$name
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  log=$dir/fuzz.log

  # Regression inputs: run once each, no fuzzing.
  nreg=0
  if [ -d "$src/regress/$name" ]; then
    set --
    for f in "$src/regress/$name"/*; do
      [ -f "$f" ] && set -- "$@" "$f"
    done
    nreg=$#
    if [ "$nreg" -gt 0 ] &&
       ! "$target" -runs=1 -artifact_prefix="$dir/artifacts/" "$@" \
         >"$dir/regress.log" 2>&1; then
      echo "FAIL: $name: a regression input crashes again:" >&2
      tail -n 40 "$dir/regress.log" >&2
      status=1
      continue
    fi
  fi

  cp "$src/corpus/$name"/* "$dir/corpus/" 2>/dev/null
  set -- -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/"
  [ -f "$src/$name.dict" ] && set -- "$@" -dict="$src/$name.dict"
  if "$target" "$@" "$dir/corpus" >"$log" 2>&1; then
    result=ok
  else
    result=FAIL
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
  printf '%-18s %s: %s execs in %ss, coverage %s edges, %s features, corpus %s (%s regression inputs)\n' \
    "$name" "$result" "${execs:-?}" "$seconds" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "$nreg"
  if [ "$result" = FAIL ]; then
    # The report, without libFuzzer's progress lines.
    grep -v -E '^#[0-9]+' "$log" | tail -n 50 >&2
    for a in "$dir"/artifacts/*; do
      [ -f "$a" ] && echo "  crashing input: $a (fix the bug, then keep it in tests/fuzz/regress/$name/)" >&2
    done
  fi
done
exit "$status"
