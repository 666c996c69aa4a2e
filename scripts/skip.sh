# Sourced by scripts/test.sh and the suites in scripts/suites/ (not a suite itself; kept
# outside scripts/suites/ so that test.sh does not run it). `skip NAME REASON` reports
# a suite, or a check within one, that did not run. It prints `SKIPPED NAME: REASON` and
# appends the same line to the file named by RINGCAST_SKIP_LOG (when set), which
# scripts/test.sh empties at its start and summarises at its end. The Rust tests write the
# same lines through tests/common/skip.rs.
skip() {
  local line="SKIPPED $1: $2"
  echo "$line"
  if [ -n "${RINGCAST_SKIP_LOG:-}" ]; then
    echo "$line" >> "$RINGCAST_SKIP_LOG"
  fi
}

# `skip_summary FILE`: the end of scripts/test.sh. Prints each distinct line of FILE once
# (both cargo runs report the same skips), or `no test skipped`, then the run's last line:
# `all tests passed` only when nothing was skipped.
skip_summary() {
  local skipped count
  skipped=$(awk '!seen[$0]++' "$1" 2>/dev/null)
  if [ -z "$skipped" ]; then
    echo "no test skipped"
    printf '\n== %s\n' "all tests passed"
  else
    printf '%s\n' "$skipped"
    count=$(printf '%s\n' "$skipped" | wc -l)
    printf '\n== %s\n' "all tests that ran passed; $count skipped (listed above)"
  fi
}
