#!/usr/bin/env bash
# The one test command (README): installs what the tests need into .build/ (ignored),
# then runs every test — Rust unit + black-box tests under io_uring and under the legacy
# epoll driver, then the suites registered below — and ends with the tests and suites that
# did not run, and why.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

# A test or suite that cannot run (a tool missing) passes, as cargo has no skipped state,
# but appends `SKIPPED <test>: <reason>` to this file (tests/common/skip.rs for Rust tests,
# scripts/skip.sh for suites); the summary at the end lists every line. Absolute: the
# loadtest crate's tests run in loadtest/.
source scripts/skip.sh
mkdir -p .build
export RINGCAST_SKIP_LOG="$PWD/.build/skipped.log"
: > "$RINGCAST_SKIP_LOG"

step "system packages (chromium, tesseract-ocr)"
bash scripts/install-system.sh

step "nats-server for the cluster and loadtest NATS tests (scripts/install-nats.sh)"
RINGCAST_NATS_SERVER=$(bash scripts/install-nats.sh | tail -n 1)
export RINGCAST_NATS_SERVER

# Test builds enable the test-only `fault-injection` feature (tests/worker_panic.rs); a
# release build never has it. Every cargo step below uses the same features, so nothing is
# rebuilt between them.
FEATURES=(--features ringcast/fault-injection)

step "cargo build (debug, all targets)"
cargo build --workspace --all-targets --locked "${FEATURES[@]}"

step "cargo test (io_uring driver, falling back to legacy where io_uring is unavailable)"
cargo test --workspace --locked "${FEATURES[@]}"

step "cargo test (legacy epoll driver forced)"
RINGCAST_TEST_IO_DRIVER=legacy cargo test --locked --tests "${FEATURES[@]}"

# Further suites (official SDK interop, examples) register themselves here: each is an
# executable script under scripts/suites/ that exits non-zero on failure.
if [ -d scripts/suites ]; then
  for suite in scripts/suites/*.sh; do
    [ -e "$suite" ] || continue
    step "suite $(basename "$suite")"
    bash "$suite"
  done
fi

step "skipped tests and suites"
skip_summary "$RINGCAST_SKIP_LOG"
