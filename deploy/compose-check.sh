#!/usr/bin/env bash
# Scale-out check: compose.yml (PostgreSQL + two bot replicas, Socket Mode) against the test
# fakes (deploy/compose.fakes.yml). Sends 20 mentions over Socket Mode, which the fake Slack
# spreads over the open connections as Slack does, and checks that every one is answered once
# and that both replicas took turns: each acked events and each started answers.
#
#   deploy/compose-check.sh              # docker compose, else podman-compose
#   COMPOSE="podman-compose" deploy/compose-check.sh
#
# Exits 0 when the check passes, 1 when it fails, 77 (skipped) when no container engine runs.
set -euo pipefail
cd "$(dirname "$0")/.."

compose=${COMPOSE:-}
if [ -z "$compose" ]; then
  if docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    compose="docker compose"
  elif command -v podman-compose >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
    compose="podman-compose"
  else
    echo "skipped: no container engine (neither 'docker compose' with a running engine nor podman-compose)"
    exit 77
  fi
fi
files=(-f compose.yml -f deploy/compose.fakes.yml)
export BOT_ENV_FILE=deploy/fakes.env
control="http://127.0.0.1:${FAKES_CONTROL_PORT:-18002}"
mentions=${MENTIONS:-20}

down() { $compose "${files[@]}" down -v >/dev/null 2>&1 || true; }
trap down EXIT

echo "building and starting with: $compose"
$compose "${files[@]}" build bot
$compose "${files[@]}" up -d

echo "waiting for both replicas to connect over Socket Mode"
connections=0
for _ in $(seq 180); do
  connections=$(curl -fsS "$control/status" 2>/dev/null \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["socket_connections"])' 2>/dev/null \
    || echo 0)
  [ "$connections" -ge 2 ] && break
  sleep 1
done
if [ "$connections" -lt 2 ]; then
  echo "FAIL: $connections Socket Mode connection(s) after 180 s"
  $compose "${files[@]}" logs --tail 40 bot || true
  exit 1
fi

report=$(curl -fsS -X POST "$control/mentions?count=$mentions")
echo "report: $report"
python3 - "$report" "$mentions" <<'PY'
import json
import sys

report, sent = json.loads(sys.argv[1]), int(sys.argv[2])
problems = []
if report["answered"] != sent:
    problems.append(f"{report['answered']} of {sent} mentions answered")
acked = {k: v for k, v in report["acked_by_connection"].items() if v}
if len(acked) < 2:
    problems.append(f"events acked by {len(acked)} connection(s), not both replicas")
answering = {k: v for k, v in report["answered_from"].items() if v}
if len(answering) < 2:
    problems.append(f"answers started by {len(answering)} replica(s): {answering}")
if report["most_replies_in_a_thread"] != 1:
    problems.append(f"a thread got {report['most_replies_in_a_thread']} replies, not one")
if problems:
    print("FAIL: " + "; ".join(problems))
    sys.exit(1)
print(f"OK: {sent} mentions answered once each; acks per connection {acked}; "
      f"answers per replica {answering}")
PY
