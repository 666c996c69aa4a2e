#!/bin/bash
# Performance tables per regime (issue 16, item 3): closed loop (windows 32/256), open loop
# sweeps (fanout, topics) with capacity at p99 <= 50 ms, http and fanin closed loop.
# ringcast vs tokio-baseline vs nats-server, 1 worker/thread budget, server CPU 0, harness CPU 1.
cd "$(dirname "$0")/../../.."
export RINGCAST_NATS_SERVER=$PWD/.build/nats/bin/nats-server
L=target/release/ringcast-loadtest
D=${D:-8}
O=${O:-loadtest/results/regimes}; mkdir -p $O
C="--workers 1 --server-cpus 0 --client-cpus 1 --nats-bin $RINGCAST_NATS_SERVER"
F="--subscribers 2000 --duration $D"
T="--subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration $D"
echo "== fanout window 32"; $L fanout --compare ringcast,tokio-baseline,nats --rounds 2 $C $F --window 32 --output $O/fanout-w32.json 2>&1 | grep -E "round|x  |warning" | cut -c1-330
echo "== fanout window 256"; $L fanout --compare ringcast,tokio-baseline,nats --rounds 2 $C $F --window 256 --output $O/fanout-w256.json 2>&1 | grep -E "round|x  |warning" | cut -c1-330
echo "== topics closed loop"; $L topics --compare ringcast,tokio-baseline,nats --rounds 2 $C $T --output $O/topics.json 2>&1 | grep -E "round|x  |warning" | cut -c1-330
echo "== http"; $L http --compare ringcast,tokio-baseline --rounds 2 $C --duration $D --output $O/http.json 2>&1 | grep -E "round|x  |warning" | cut -c1-330
echo "== fanin"; $L fanin --compare ringcast,tokio-baseline --rounds 2 $C --duration $D --output $O/fanin.json 2>&1 | grep -E "round|x  |warning" | cut -c1-330
echo "== sweep fanout"; $L sweep --scenario fanout --compare ringcast,tokio-baseline,nats --rates ${FR:-200,400,600,900,1200,1600} --slo-ms 50 $C $F --output $O/sweep-fanout.json 2>&1 | sed -n '/pub\/s  offered/,$p'
echo "== sweep topics"; $L sweep --scenario topics --compare ringcast,tokio-baseline,nats --rates ${TR:-25k,50k,75k,100k,150k} --slo-ms 50 $C $T --output $O/sweep-topics.json 2>&1 | sed -n '/pub\/s  offered/,$p'
echo DONE
