#!/usr/bin/env bash
# The API contract, checked from outside against a served copy of a demo database:
#   0. the document is valid OpenAPI 3.0 (openapi-spec-validator);
#   1. a Python client generated from /api/openapi.json (openapi-python-client) logs in, lists
#      vouchers, places an order and posts signed usage (.ci/api/client_test.py);
#   2. schemathesis runs a bounded, seeded pass over every operation (.ci/api/schemathesis.toml)
#      and must find no failure;
#   3. the database it leaves passes `suanli audit verify`.
# Usage: bash .ci/api-contract.sh SUANLI_BINARY DEMO_DATABASE
# The tools are installed from PyPI into a virtual environment (kept in target/api-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
source_db=$2
work=$(mktemp -d)
server=""
stop() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT

venv=target/api-venv
if [ ! -x "$venv/bin/st" ] || [ ! -x "$venv/bin/openapi-python-client" ] || [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis==4.32.5 openapi-python-client==0.29.1 openapi-spec-validator==0.9.0 cryptography
fi

for file in "$source_db" "$source_db-wal" "$source_db-shm"; do
    [ ! -e "$file" ] || cp "$file" "$work/"
done
db="$work/$(basename "$source_db")"
password="contract-admin-$$-$RANDOM"
SUANLI_PASSWORD="$password" "$bin" user add --database "$db" --name contract --role admin > /dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$bin" serve --database "$db" --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
    curl -fs "$base/readyz" > /dev/null 2>&1 && break
    sleep 0.5
done
curl -fs "$base/readyz" > /dev/null || { cat "$work/serve.log" >&2; exit 1; }

echo "-- the document"
curl -fs "$base/api/openapi.json" > "$work/openapi.json"
"$venv/bin/openapi-spec-validator" --schema 3.0 "$work/openapi.json"

echo "-- a client generated from the document"
PATH="$PWD/$venv/bin:$PATH" openapi-python-client generate --path "$work/openapi.json" \
    --output-path "$work/suanli_client" --meta none --fail-on-warning > "$work/generate.log" 2>&1 \
    || { cat "$work/generate.log" >&2; exit 1; }
PYTHONPATH="$work" "$venv/bin/python" .ci/api/client_test.py "$base" contract "$password"

echo "-- schemathesis"
token=$(curl -fs -X POST "$base/api/v1/login" -H 'content-type: application/json' \
    -d "{\"name\":\"contract\",\"password\":\"$password\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
# Disabling a person, setting a password and revoking a token may end the session in use.
"$venv/bin/st" --config-file .ci/api/schemathesis.toml run "$base/api/openapi.json" --url "$base" \
    -H "Authorization: Bearer $token" --no-color \
    --exclude-operation-id disableUser --exclude-operation-id setUserPassword \
    --exclude-operation-id revokeToken > "$work/schemathesis.log" 2>&1 \
    || { cat "$work/schemathesis.log"; exit 1; }
grep -E "^(Test cases|  [0-9]+ generated)" -A1 "$work/schemathesis.log" | tail -2

kill "$server"
wait "$server" 2>/dev/null || true
server=""
echo "-- the database after the pass"
"$bin" audit verify --database "$db" | tail -n 1
