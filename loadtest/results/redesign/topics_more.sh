#!/bin/bash
cd /work/main
L=/work/before/ringcast-loadtest
C="--server ringcast --workers 1 --server-cpus 0 --client-cpus 1 --rounds 1"
O=/work/bench/out
for r in 3 4 5; do for side in after before; do
  if [ $side = before ]; then B=/work/before; else B=$PWD/target/release; fi
  echo "== topics $side r$r"
  $L topics $C --bin-dir $B --subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration 8 --output $O/topics-$side-$r.json 2>&1 | grep -E "round 1|warning" | cut -c1-330
done; done
