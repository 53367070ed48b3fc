#!/usr/bin/env bash
# Grant bursts with a small and a large client image in one run, on one site
# (SQLite, durable), with the clients' hashing left out of the measurement
# ('licet bench grants --prepare-answers'):
#   1. warm pool: CLIENTS new clients at CONC concurrent, 64 KiB image, then
#      the 32 MiB image, twice each, alternating, each from a full pool;
#   2. drained pool: a site restarted with --challenge-pool 64 serves
#      DRAINED clients of the 32 MiB image, most at the rate the pool
#      workers refill (1 worker, then 2); beside it the machine's SHA-256 rate.
# Usage: scripts/bench-images.sh [CLIENTS] [CONC] [DRAINED]
set -euo pipefail
CLIENTS=${1:-1000}; CONC=${2:-64}; DRAINED=${3:-400}
cd "$(dirname "$0")/.."
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
go build -o "$W/licet" ./cmd/licet
L="$W/licet"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
export LICET_TOKEN=$($L vendor init --data "$W/vendor" --name Bench --json | json admin_token)
$L vendor serve --data "$W/vendor" --listen 127.0.0.1:0 > "$W/vendor.out" 2>"$W/vendor.log" &
until grep -q listening "$W/vendor.out" 2>/dev/null; do sleep 0.1; done
export LICET_VENDOR_URL=$(grep -o 'http://[^ ]*' "$W/vendor.out")
$L vendor product add --id app --version 1.0 >/dev/null
$L vendor customer add --id bench >/dev/null
CODE=$($L vendor enroll create --customer bench --json | json code)
$L site init --data "$W/site" --vendor "$LICET_VENDOR_URL" --enroll "$CODE" >/dev/null
ORDER=$($L vendor order add --customer bench --product app --platform non-windows --quantity 50000 --json | json id)
$L site pack buy --data "$W/site" --order "$ORDER" >/dev/null
head -c 65536 /dev/urandom > "$W/small"
head -c 33554432 /dev/urandom > "$W/large"
SMALL=non-windows/1/1; LARGE=non-windows/1/2
for x in "small $SMALL" "large $LARGE"; do
  set -- $x
  $L vendor image sign --software-id "$2" -o "$W/$1.sig" "$W/$1"
  $L site image add --data "$W/site" --signature "$W/$1.sig" "$W/$1" >/dev/null
done

serve() { # serve NAME FLAGS...: start a site process, set SITE
  local name=$1; shift
  $L site serve --data "$W/site" --listen 127.0.0.1:0 --rate-limit 0 "$@" > "$W/$name.out" 2>"$W/$name.log" &
  SITE_PID=$!
  until grep -q listening "$W/$name.out" 2>/dev/null; do sleep 0.1; done
  SITE=$(grep -o 'http://[^ ]*' "$W/$name.out")
}
pool() { curl -s "$SITE/metrics" | awk -v l="licet_challenge_pool_pairs{software_id=\"$1\"}" '$1==l {print $2}'; }
full() { # full SID: wait until the pool of SID is full
  local cap; cap=$(curl -s "$SITE/metrics" | awk -v l="licet_challenge_pool_capacity{software_id=\"$1\"}" '$1==l {print $2}')
  until [ "$(pool "$1")" = "$cap" ]; do sleep 0.5; done
}
bench() { # bench SID IMAGE CLIENTS
  $L bench grants --server "$SITE" --product app --software-id "$1" --image "$2" --clients "$3" --concurrency "$CONC" --prepare-answers
}

serve site
echo "# warm pool: $CLIENTS new clients, concurrency $CONC, SQLite, --prepare-answers"
for round in 1 2; do
  for x in "64KiB $SMALL $W/small" "32MiB $LARGE $W/large"; do
    set -- $x
    full "$2"
    echo "## $1 image, round $round (pool $(pool "$2") ready)"
    bench "$2" "$3" "$CLIENTS"
  done
done
kill "$SITE_PID"; wait "$SITE_PID" 2>/dev/null || true

for workers in 1 2; do
  serve drained --challenge-pool 64 --challenge-workers "$workers"
  full "$LARGE"
  echo "# drained pool: $DRAINED clients of the 32 MiB image, pool of 64, $workers worker(s)"
  bench "$LARGE" "$W/large" "$DRAINED"
  kill "$SITE_PID"; wait "$SITE_PID" 2>/dev/null || true
done
echo "# SHA-256 of the challenge answer on this machine (one core)"
go test -run='^$' -bench='Answer' -benchtime=20x ./licensing/challenge | grep -E 'Benchmark|MB/s'
