#!/bin/bash
cd /work/main
L=target/release/ringcast-loadtest
O=/tmp/bench/scale; mkdir -p $O
T="--subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration 8 --rounds 1"
echo "== topics 1 worker (server CPU 0, client CPU 1)"; $L topics --server ringcast --workers 1 --server-cpus 0 --client-cpus 1 $T --output $O/topics-w1.json 2>&1 | grep "round 1"
echo "== topics 2 workers (server CPUs 0-1, client CPUs 0-1)"; $L topics --server ringcast --workers 2 --server-cpus 0-1 --client-cpus 0-1 $T --output $O/topics-w2.json 2>&1 | grep "round 1"
F="--subscribers 2000 --window 256 --duration 8 --rounds 1"
echo "== fanout 1 worker"; $L fanout --server ringcast --workers 1 --server-cpus 0 --client-cpus 1 $F --output $O/fanout-w1.json 2>&1 | grep "round 1"
echo "== fanout 2 workers"; $L fanout --server ringcast --workers 2 --server-cpus 0-1 --client-cpus 0-1 $F --output $O/fanout-w2.json 2>&1 | grep "round 1"
echo DONE
