#!/bin/bash
# Before/after hot-path figures for issue 14: the same harness drives the ringcast binary of
# 3871045 (/work/before) and of the redesign (target/release), alternating B A B A.
cd /work/main
L=/work/before/ringcast-loadtest   # one harness for both servers (the client is held constant)
C="--server ringcast --workers 1 --server-cpus 0 --client-cpus 1 --rounds 1"
O=${O:-/work/bench/out}; mkdir -p $O
run() { # scenario args...
  local name=$1; shift
  for r in 1 2; do for side in before after; do
    if [ $side = before ]; then B=/work/before; else B=$PWD/target/release; fi
    echo "== $name $side r$r"
    $L $name $C --bin-dir $B "$@" --output $O/$name-$side-$r.json 2>&1 | grep -E "round 1|warning" | cut -c1-400
  done; done
}
run http --duration 8
run topics --subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration 8
run fanout --subscribers 2000 --window 256 --duration 8
run idle --connections 15000 --source-addresses 4 --duration 5
echo DONE
