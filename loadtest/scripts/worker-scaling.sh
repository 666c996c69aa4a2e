#!/usr/bin/env bash
# Worker scaling (issue 16, item 8): `topics` and `fanout` with 1, 2, 4 and 8 ringcast
# workers, each on its own core, and the harness on the other cores spread over client
# processes, so that the server, not the client, is the limit. Prepared for a 16-core
# machine: server cores 0..W-1, client cores 8-15. On a smaller machine set SERVER_MAX and
# CLIENT_CPUS (e.g. SERVER_MAX=1 CLIENT_CPUS=1 on 2 cores: then only 1 worker is measured
# cleanly). Results (JSON with provenance) go to loadtest/results/worker-scaling/.
#
#   cargo build --release -p ringcast -p ringcast-loadtest
#   bash loadtest/scripts/worker-scaling.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
L=target/release/ringcast-loadtest
SERVER_MAX=${SERVER_MAX:-8}
CLIENT_CPUS=${CLIENT_CPUS:-8-15}
CLIENT_PROCESSES=${CLIENT_PROCESSES:-4}
DURATION=${DURATION:-10}
OUT=${OUT:-loadtest/results/worker-scaling}
mkdir -p "$OUT"
for workers in 1 2 4 8; do
  [ "$workers" -le "$SERVER_MAX" ] || break
  server_cpus="0-$((workers - 1))"
  common=(--server ringcast --workers "$workers" --server-cpus "$server_cpus"
    --client-cpus "$CLIENT_CPUS" --client-processes "$CLIENT_PROCESSES"
    --source-addresses 4 --rounds 2 --duration "$DURATION")
  echo "== topics, $workers worker(s) on CPUs $server_cpus"
  "$L" topics "${common[@]}" --subscribers $((2000 * workers)) --topics $((1000 * workers)) \
    --subscriptions-per-connection 5 --publishers $((4 * workers)) \
    --output "$OUT/topics-w$workers.json"
  echo "== fanout, $workers worker(s) on CPUs $server_cpus"
  "$L" fanout "${common[@]}" --subscribers $((2000 * workers)) --window 256 \
    --output "$OUT/fanout-w$workers.json"
done
echo "results: $OUT (compare deliveries per server CPU-second and deliveries/s by worker count)"
