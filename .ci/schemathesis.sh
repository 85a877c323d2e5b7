#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a live `netia serve` on a fresh PostgreSQL database: every
# operation of /api/openapi.json, a bounded number of examples each, all checks except
# positive_data_acceptance (some schema-valid requests break domain rules the schema cannot state:
# a taken email address, an unknown account). Fails on any finding or on a panic in the server log.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/schemathesis-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

admin="${NETIA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="netia_schemathesis_$$"
psql -q "$admin" -c "CREATE DATABASE $db"
# A port the kernel says is free now: one derived from the pid fell in the ephemeral range, and a
# run failed when another connection held it ("Address already in use").
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=target/schemathesis-server.log
DATABASE_URL="${admin%/*}/$db" PORT=$port RUST_LOG=warn NETIA_SECRET_KEY="$(head -c 32 /dev/urandom | base64)" \
  RATE_LIMIT_IP_PER_MINUTE=1000000 RATE_LIMIT_CUSTOMER_PER_MINUTE=1000000 \
  target/debug/netia serve >"$log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "netia serve exited:"; tail -5 "$log"; exit 1; }
  sleep 0.5
done
token=$(curl -fs -X POST "http://127.0.0.1:$port/api/registration" -H 'Content-Type: application/json' \
  -d '{"email":"schemathesis@example.com","password":"schemathesis-password","account_name":"Fuzz"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["token"])')

"$venv/bin/st" run "http://127.0.0.1:$port/api/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" --seed 1 --request-timeout 10

if grep -q "panicked" "$log"; then
  echo "the server panicked during the run:" >&2
  grep -A5 "panicked" "$log" >&2
  exit 1
fi
