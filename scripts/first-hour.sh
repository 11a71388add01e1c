#!/usr/bin/env bash
# The README's first screen, done as a newcomer does it, on a fresh clone of this repository's HEAD:
# install, the demo (stopped with SIGTERM, as a process manager would), npm start, the first request
# with curl and with the SDK (the README's own snippets, run as written), and the first cost report,
# whose figures must be those of the traffic just sent. Fails on any non-zero exit, any stack trace
# in the output, or any figure that does not match. Uses ports 8080, 8081 and 4010.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "first-hour: FAILED: $*" >&2
  for f in "$work"/*.log; do [ -e "$f" ] && { echo "--- $(basename "$f")" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
step() { echo "first-hour: $*"; }
# Waits (bounded) until a command succeeds.
until_ok() {
  local seconds=$1
  shift
  for _ in $(seq 1 $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
port_free() { ! curl -s -m 1 -o /dev/null "http://127.0.0.1:$1/"; }
for port in 8080 8081 4010; do port_free "$port" || fail "port $port is in use: stop what holds it first"; done

git clone -q "$repo" "$work/gw"
cd "$work/gw"
# The README's code blocks, as a reader copies them.
block() { awk -v lang="$1" -v n="$2" '/^```/ { if (inside) { inside = 0; next } if ($0 == "```" lang) { count++; if (count == n) { inside = 1; next } } } inside { print }' README.md; }

step "npm install"
npm install --prefer-offline --no-audit --no-fund >"$work/install.log" 2>&1 || fail "npm install"

step "npm run demo, stopped with SIGTERM once it serves"
npm run demo >"$work/demo.log" 2>&1 &
demo=$!
pids+=("$demo")
until_ok 90 grep -q 'Ctrl-C to stop' "$work/demo.log" || fail "the demo did not finish its requests"
for model in demo-model demo-claude demo-gemini; do
  grep -q "^$model via .*: Hello from the emulator" "$work/demo.log" || fail "the demo did not answer through $model"
done
kill -TERM "$demo"
wait "$demo" || true
until_ok 20 port_free 8080 || fail "the demo left its gateway running on :8080 after SIGTERM"
until_ok 20 port_free 4010 || fail "the demo left its emulator running on :4010 after SIGTERM"

step "npm start"
npm start >"$work/start.log" 2>&1 &
start=$!
pids+=("$start")
until_ok 90 curl -sf http://127.0.0.1:8080/readyz || fail "npm start did not become ready"
until_ok 30 curl -sf http://127.0.0.1:8081/healthz || fail "the analytics worker did not come up"
grep -q '"msg":"demo emulator listening"' "$work/start.log" || fail "npm start did not say it started the demo emulator"

step "the README's curl"
curl_cmd="$(block sh 3)"
[[ "$curl_cmd" == curl* ]] || fail "the README's third sh block is not the curl request"
bash -c "$curl_cmd" >"$work/curl.json" 2>>"$work/curl.log" || fail "the README's curl failed"

step "the README's SDK snippet"
{ block ts 1; echo 'console.log(JSON.stringify(r))'; } >"$work/gw/first-request.ts"
npx --no-install bun first-request.ts >"$work/sdk.json" 2>"$work/sdk.log" || fail "the README's SDK snippet failed"

# What the two answers said they used, and what the sample config charges for demo-model.
read -r requests input output expected_cost < <(npx --no-install bun -e "
  const { parse } = require('yaml')
  const fs = require('node:fs')
  const answers = ['$work/curl.json', '$work/sdk.json'].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')))
  for (const a of answers) if (!a.choices?.[0]?.message?.content) throw new Error('an answer without content: ' + JSON.stringify(a))
  const config = parse(fs.readFileSync('config/gateway.sample.yaml', 'utf8'))
  const model = config.providers.flatMap((p) => p.models).find((m) => m.name === 'demo-model')
  const input = answers.reduce((n, a) => n + a.usage.prompt_tokens, 0)
  const output = answers.reduce((n, a) => n + a.usage.completion_tokens, 0)
  const cost = (input * model.cost_per_1k_input_tokens + output * model.cost_per_1k_output_tokens) / 1000
  console.log(answers.length, input, output, cost.toFixed(12))
") || fail "cannot read the answers"

step "the README's first cost report"
report_cmd="$(block sh 4 | sed 's/ *#.*$//')"
[[ "$report_cmd" == "npm run costs"* ]] || fail "the README's fourth sh block is not the cost report"
bash -c "$report_cmd" >"$work/costs.log" 2>&1 || fail "the cost report failed"
cat "$work/costs.log"
row="$(grep -E '^demo-model ' "$work/costs.log")" || fail "the cost report has no demo-model row"
read -r _ got_requests _ _ got_input got_output got_cost <<<"$row"
[ "$got_requests" = "$requests" ] || fail "the report says $got_requests requests, $requests were sent"
[ "$got_input" = "$input" ] || fail "the report says $got_input input tokens, the answers said $input"
[ "$got_output" = "$output" ] || fail "the report says $got_output output tokens, the answers said $output"
[ "$got_cost" = "$expected_cost" ] || fail "the report says \$$got_cost, the prices make it \$$expected_cost"

step "stopping npm start with SIGTERM"
kill -TERM "$start"
wait "$start" || true
until_ok 30 port_free 8080 || fail "npm start left the gateway running after SIGTERM"
until_ok 30 port_free 8081 || fail "npm start left the analytics worker running after SIGTERM"

step "without the optional chdb: npm start says so in one line; the gateway alone serves"
npm rm --no-save chdb >"$work/rm-chdb.log" 2>&1 || fail "npm rm chdb"
if npm start >"$work/nochdb.log" 2>&1; then fail "npm start without chdb or CLICKHOUSE_URL did not fail"; fi
grep -q '^analytics: embedded ClickHouse needs the optional package chdb' "$work/nochdb.log" || fail "npm start without chdb did not say what is missing"
# The gateway alone does not start the demo emulator: it runs on its own.
npm run emulator >"$work/emulator.log" 2>&1 &
emulator=$!
pids+=("$emulator")
npm run gateway >"$work/gateway.log" 2>&1 &
alone=$!
pids+=("$alone")
until_ok 30 curl -sf http://127.0.0.1:4010/__emulator/stats || fail "npm run emulator did not come up"
until_ok 60 curl -sf http://127.0.0.1:8080/readyz || fail "npm run gateway without chdb did not become ready"
bash -c "$curl_cmd" | grep -q '"finish_reason":"stop"' || fail "npm run gateway without chdb did not answer"
kill -TERM "$alone" "$emulator"
wait "$alone" "$emulator" || true
until_ok 30 port_free 8080 || fail "npm run gateway left the gateway running after SIGTERM"
until_ok 30 port_free 4010 || fail "npm run emulator left the emulator running after SIGTERM"

# Expected conditions print one line, never a trace.
if grep -nE '^\s+at .+:[0-9]+(:[0-9]+)?\)?$|^[A-Za-z]*Error: ' "$work"/*.log; then fail "a stack trace in the output"; fi
step "ok: demo, npm start, curl, SDK and a cost report of $requests requests (\$$got_cost), no stack trace"
