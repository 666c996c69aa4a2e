#!/bin/bash
# Hot path before and after issue 15's changes to the broker (interest map buckets with a
# stable hash, shared topic names, compact token cache; single-node paths): the same
# harness (HEAD's) drives the ringcast binary of 7e54e6e (BEFORE, built in a worktree)
# and of HEAD (target/release), alternating before/after, 1 worker, server on CPU 0,
# harness on CPU 1.
cd "$(dirname "$0")/../../.."
BEFORE=${BEFORE:-/work/before15/target/release}
L=$PWD/target/release/ringcast-loadtest
C="--server ringcast --workers 1 --server-cpus 0 --client-cpus 1 --rounds 1"
O=${O:-loadtest/results/issue15}
run() { # scenario args...
  local name=$1; shift
  for r in 1 2; do for side in before after; do
    if [ $side = before ]; then B=$BEFORE; else B=$PWD/target/release; fi
    echo "== $name $side r$r"
    $L $name $C --bin-dir $B "$@" --output $O/$name-$side-$r.json 2>&1 | grep -E "round 1|warning" | cut -c1-300
  done; done
}
run http --duration 8
run topics --subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration 8
run fanout --subscribers 2000 --window 256 --duration 8
run fanin --publishers 200 --duration 8
run idle --connections 15000 --source-addresses 4 --duration 5
echo DONE
