#!/usr/bin/env bash
# Sets up a vendor and a site with one pack of SEATS seats on this machine, then
# runs 'licet bench grants' and 'licet bench verify' against the site.
# Usage: scripts/bench-grants.sh [--db postgres://...] [--sites N] [--wrong C] [--prepare] [SEATS] [CLIENTS] [CONCURRENCY]
# --sites N starts N 'site serve' processes on the database (PostgreSQL) and sends
# the grants round robin; --wrong C adds C concurrent clients that keep sending
# wrong answers during the run (the abuse case; they stop after WRONGFOR,
# default 15s, and the script waits for them; WRONGFLAGS=--ignore-retry-after
# makes them ask again at once after a 429); --prepare runs the grants with
# --prepare-answers (challenges, then answers and signed requests made
# untimed, then grants: the clients' own work left out, as it happens on
# their machines). SITEFLAGS adds flags to 'site serve' (e.g. SITEFLAGS="--challenge-pool
# 8192": a pool as large as the burst, so that no answer is precomputed during
# it). LICET=path uses that binary
# instead of building one (to compare two builds in one session); NOVERIFY=1
# skips the verification benchmark that follows the grants.
# Prints the load generator's results; everything lives in a temporary directory.
set -euo pipefail
DB=""; SITES=1; WRONG=0; PREPARE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --db) DB="$2"; shift 2;;
    --sites) SITES="$2"; shift 2;;
    --wrong) WRONG="$2"; shift 2;;
    --prepare) PREPARE=(--prepare-answers); shift;;
    *) break;;
  esac
done
SEATS=${1:-20000}; CLIENTS=${2:-5000}; CONC=${3:-64}
cd "$(dirname "$0")/.."
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
if [ -n "${LICET:-}" ]; then cp "$LICET" "$W/licet"; else go build -o "$W/licet" ./cmd/licet; fi
L="$W/licet"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
export LICET_TOKEN=$($L vendor init --data "$W/vendor" --name Bench --json | json admin_token)
$L vendor serve --data "$W/vendor" --listen 127.0.0.1:0 > "$W/vendor.out" 2>"$W/vendor.log" &
until grep -q listening "$W/vendor.out" 2>/dev/null; do sleep 0.1; done
export LICET_VENDOR_URL=$(grep -o 'http://[^ ]*' "$W/vendor.out")
$L vendor product add --id app --version 1.0 >/dev/null
$L vendor customer add --id bench >/dev/null
CODE=$($L vendor enroll create --customer bench --json | json code)
SITEDB=(); [ -n "$DB" ] && SITEDB=(--db "$DB")
$L site init --data "$W/site" --vendor "$LICET_VENDOR_URL" --enroll "$CODE" "${SITEDB[@]}" >/dev/null
ORDER=$($L vendor order add --customer bench --product app --platform non-windows --quantity "$SEATS" --json | json id)
$L site pack buy --data "$W/site" --order "$ORDER" >/dev/null
head -c 65536 /dev/urandom > "$W/client-image"
$L vendor image sign --software-id non-windows/1/1 -o "$W/image.sig" "$W/client-image"
$L site image add --data "$W/site" --signature "$W/image.sig" "$W/client-image" >/dev/null
SERVERS=(); SITEPIDS=()
# cpu PID...: the CPU seconds (user + system) the processes used so far, from /proc.
cpu() { for p in "$@"; do cut -d' ' -f14,15 "/proc/$p/stat"; done | awk -v hz="$(getconf CLK_TCK)" '{t += $1 + $2} END {printf "%.3f", t / hz}'; }
for i in $(seq 1 "$SITES"); do
  $L site serve --data "$W/site" --listen 127.0.0.1:0 --rate-limit 0 ${SITEFLAGS:-} > "$W/site$i.out" 2>"$W/site$i.log" &
  SITEPIDS+=($!)
  until grep -q listening "$W/site$i.out" 2>/dev/null; do sleep 0.1; done
  SERVERS+=(--server "$(grep -o 'http://[^ ]*' "$W/site$i.out")")
done
SITE=$(grep -o 'http://[^ ]*' "$W/site1.out")
if [ -n "$DB" ]; then KIND="PostgreSQL, $SITES site processes"; else KIND=SQLite; fi
if [ "$WRONG" -gt 0 ]; then
  echo "# abuse: $WRONG concurrent clients sending wrong answers during the run"
  $L bench grants "${SERVERS[@]}" --product app --software-id non-windows/1/1 --image "$W/client-image" --clients 100000000 --concurrency "$WRONG" --wrong-answers --duration "${WRONGFOR:-15s}" ${WRONGFLAGS:-} > "$W/wrong.out" 2>&1 &
  WRONGPID=$!
  sleep 1
fi
echo "# grants: $CLIENTS clients, concurrency $CONC, $KIND"
CPU0=$(cpu "${SITEPIDS[@]}")
$L bench grants "${SERVERS[@]}" --product app --software-id non-windows/1/1 --image "$W/client-image" --clients "$CLIENTS" --concurrency "$CONC" "${PREPARE[@]}"
echo "# site CPU per grant (user+system of the site processes from /proc, over the whole bench command): $(python3 -c "print(f'{($(cpu "${SITEPIDS[@]}") - $CPU0) / $CLIENTS * 1e6:.0f} µs')")"
if [ "$WRONG" -gt 0 ]; then
  # The abusers' own figures cover their whole run (until --duration), not only the grants above.
  wait "$WRONGPID" 2>/dev/null || true; sed 's/^/# wrong answers (whole run): /' "$W/wrong.out" || true
fi
if [ -n "$DB" ]; then
  echo "# seats: $($L site pack list --data "$W/site" --json | python3 -c 'import json,sys; p=json.load(sys.stdin); print("assigned", sum(x["assigned"] for x in p), "of", sum(x["quantity"] for x in p))')"
fi
[ -n "${NOVERIFY:-}" ] && exit 0
$L agent init --data "$W/agent" --platform non-windows >/dev/null
$L agent license acquire --data "$W/agent" --server "$SITE" --product app --software-id non-windows/1/1 --image "$W/client-image" >/dev/null
echo "# verifications over HTTP, concurrency 32"
$L bench verify --server "$SITE" --license "$W/agent/licenses/app.pem" --product app --requests 40000 --concurrency 32
