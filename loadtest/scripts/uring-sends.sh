#!/usr/bin/env bash
# io_uring sends (issue 16, item 5; docs/decisions/io-uring-sends.md): `fanout`, `topics`
# and `http` with the experimental `server.ioUringSends` off and on, alternating
# (off, on, off, on), 1 worker on CPU 0, the harness on CPU 1. Builds release once.
# Results (JSON with provenance) go to loadtest/results/uring-sends/; the summary prints
# deliveries per server CPU-second per run, the mean per setting and on/off.
# Adopt at >= +10 % in any scenario (the issue's rule).
#
#   bash loadtest/scripts/uring-sends.sh               # the measurement (8 s runs)
#   DURATION=2 bash loadtest/scripts/uring-sends.sh    # a quick check that it works
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
SCENARIOS=${SCENARIOS:-"fanout topics http"}
OUT=${OUT:-loadtest/results/uring-sends}
L=target/release/ringcast-loadtest
cargo build --release --locked -p ringcast -p ringcast-loadtest
mkdir -p "$OUT"
common=(--server ringcast --workers 1 --server-cpus 0 --client-cpus 1 --rounds 1
  --subscribers 2000 --duration "$DURATION")
for scenario in $SCENARIOS; do
  case "$scenario" in
    fanout) shape=(--window 256) ;;
    topics) shape=(--topics 1000 --subscriptions-per-connection 5 --publishers 4) ;;
    http) shape=() ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  for round in $(seq 1 "$ROUNDS"); do
    for setting in false true; do
      file="$OUT/$scenario-$setting-r$round.json"
      echo "== $scenario, ioUringSends=$setting, round $round"
      "$L" "$scenario" "${common[@]}" "${shape[@]}" \
        --ringcast-setting "ioUringSends=$setting" --output "$file"
    done
  done
done
python3 - "$OUT" $SCENARIOS <<'EOF'
import json, pathlib, statistics, sys
out, scenarios = pathlib.Path(sys.argv[1]), sys.argv[2:]
print(f"\ndeliveries per server CPU-second ({out}):")
for scenario in scenarios:
    means = {}
    for setting in ("false", "true"):
        figures = []
        for path in sorted(out.glob(f"{scenario}-{setting}-r*.json")):
            runs = json.loads(path.read_text())
            for run in runs if isinstance(runs, list) else [runs]:
                m = run["measurement"]
                figures.append(m["deliveries_per_server_cpu_second"])
                print(f"  {path.name}: {m['deliveries_per_server_cpu_second'] / 1e6:.2f} M"
                      f" ({m['deliveries']} deliveries, {m['lost']} lost,"
                      f" server {m['server_cpu_seconds']:.2f} CPU-s)")
        if figures:
            means[setting] = statistics.mean(figures)
    if len(means) == 2:
        ratio = means["true"] / means["false"]
        print(f"{scenario}: off {means['false'] / 1e6:.2f} M, on {means['true'] / 1e6:.2f} M,"
              f" on/off {ratio:.3f} ({'ADOPT' if ratio >= 1.10 else 'below +10 %'})")
EOF
