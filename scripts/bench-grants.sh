#!/usr/bin/env bash
# Sets up a vendor and a site with one pack of SEATS seats on this machine, then
# runs 'licet bench grants' and 'licet bench verify' against the site.
# Usage: scripts/bench-grants.sh [--db postgres://...] [SEATS] [CLIENTS] [CONCURRENCY]
# Prints the load generator's results; everything lives in a temporary directory.
set -euo pipefail
DB=""
if [ "${1:-}" = "--db" ]; then DB="$2"; shift 2; fi
SEATS=${1:-20000}; CLIENTS=${2:-5000}; CONC=${3:-64}
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
SITEDB=(); [ -n "$DB" ] && SITEDB=(--db "$DB")
$L site init --data "$W/site" --vendor "$LICET_VENDOR_URL" --enroll "$CODE" "${SITEDB[@]}" >/dev/null
ORDER=$($L vendor order add --customer bench --product app --platform non-windows --quantity "$SEATS" --json | json id)
$L site pack buy --data "$W/site" --order "$ORDER" >/dev/null
head -c 65536 /dev/urandom > "$W/client-image"
$L vendor image sign --software-id non-windows/1/1 -o "$W/image.sig" "$W/client-image"
$L site image add --data "$W/site" --signature "$W/image.sig" "$W/client-image" >/dev/null
$L site serve --data "$W/site" --listen 127.0.0.1:0 --rate-limit 0 > "$W/site.out" 2>"$W/site.log" &
until grep -q listening "$W/site.out" 2>/dev/null; do sleep 0.1; done
SITE=$(grep -o 'http://[^ ]*' "$W/site.out")
if [ -n "$DB" ]; then KIND=PostgreSQL; else KIND=SQLite; fi
echo "# grants: $CLIENTS clients, concurrency $CONC, $KIND"
$L bench grants --server "$SITE" --product app --software-id non-windows/1/1 --image "$W/client-image" --clients "$CLIENTS" --concurrency "$CONC"
$L agent init --data "$W/agent" --platform non-windows >/dev/null
$L agent license acquire --data "$W/agent" --server "$SITE" --product app --software-id non-windows/1/1 --image "$W/client-image" >/dev/null
echo "# verifications over HTTP, concurrency 32"
$L bench verify --server "$SITE" --license "$W/agent/licenses/app.pem" --product app --requests 40000 --concurrency 32
