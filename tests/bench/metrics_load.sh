#!/bin/bash
# usage: metrics_load.sh CHUTED — a relay holding 300,000 item rows (tombstones,
# written straight into its store) while 32 clients scrape /metrics for 6 s:
# how long GET /v1/health waits meanwhile (the stats scan holds the store lock).
set -u
B=$1; D=$(mktemp -d); P=$((20000 + RANDOM % 10000))
$B --listen 127.0.0.1:$P --data $D --log-level error & pid=$!
sleep 0.5; kill $pid; wait $pid 2>/dev/null
db=$(ls $D/*.db | head -1)
sqlite3 $db "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300000) INSERT INTO items(inbox,id,sender,state,size,off,seq,meta,created,expires) SELECT 'inbox' || (i % 30), printf('item%016d', i), 's', 2, 100, 100, i, NULL, 1, 4102444800 FROM n;"
$B --listen 127.0.0.1:$P --data $D --log-level error & pid=$!
sleep 1
end=$((SECONDS + 6))
for k in $(seq 1 32); do ( while [ $SECONDS -lt $end ]; do curl -s -o /dev/null http://127.0.0.1:$P/metrics; done ) & done
sleep 1
for k in 1 2 3 4 5; do curl -s -o /dev/null -w "health %{time_total}s\n" http://127.0.0.1:$P/v1/health; sleep 0.5; done
wait_end=$((end - SECONDS)); sleep $((wait_end > 0 ? wait_end + 1 : 1))
kill $pid; wait $pid 2>/dev/null; rm -rf $D
