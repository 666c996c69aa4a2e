#!/bin/bash
cd /work/main
export RINGCAST_NATS_SERVER=$PWD/.build/nats/bin/nats-server
L=target/release/ringcast-loadtest
C="--workers 1 --server-cpus 0 --client-cpus 1 --rounds 1"
O=/tmp/bench/final; mkdir -p $O
echo "== http"; $L http --compare ringcast,tokio-baseline $C --duration 8 --output $O/http.json 2>&1 | grep -E "round 1|x  "
echo "== http interval0"; $L http --server ringcast $C --duration 8 --ringcast-setting flushIntervalMicros=0 --output $O/http0.json 2>&1 | grep -E "round 1"
echo "== topics"; $L topics --compare ringcast,tokio-baseline,nats $C --subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration 8 --output $O/topics.json 2>&1 | grep -E "round 1|x  "
echo "== topics interval0"; $L topics --server ringcast $C --subscribers 2000 --topics 1000 --subscriptions-per-connection 5 --publishers 4 --duration 8 --ringcast-setting flushIntervalMicros=0 --output $O/topics0.json 2>&1 | grep -E "round 1"
echo "== fanout w32"; $L fanout --compare ringcast,tokio-baseline $C --subscribers 2000 --window 32 --duration 8 --output $O/f32.json 2>&1 | grep -E "round 1|x  "
echo "== fanout w256"; $L fanout --compare ringcast,tokio-baseline,nats $C --subscribers 2000 --window 256 --duration 8 --output $O/f256.json 2>&1 | grep -E "round 1|x  "
echo "== fanin"; $L fanin --compare ringcast,tokio-baseline $C --duration 8 --output $O/fanin.json 2>&1 | grep -E "round 1|x  "
for us in 0 4000; do for rate in 50 600; do
echo "== fanout rate $rate interval $us"; $L fanout --server ringcast $C --subscribers 2000 --rate $rate --duration 8 --ringcast-setting flushIntervalMicros=$us --output $O/open-$rate-$us.json 2>&1 | grep -E "round 1"
done; done
echo DONE
