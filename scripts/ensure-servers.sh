#!/usr/bin/env bash
# Make sure the local servers the tests and the stack talk to are up: use a running one, start an
# installed one, install a missing one (Debian packages). Usage: ensure-servers.sh [rabbitmq ...]
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # port, name
  for _ in $(seq 1 120); do
    listening "$1" && return 0
    sleep 0.5
  done
  echo "$2 did not come up on 127.0.0.1:$1" >&2
  return 1
}

apt_install() {
  if [ -z "${TALLY_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export TALLY_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rabbitmq() {
  listening 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for 5672 RabbitMQ
}

ensure_postgres() {
  listening 5432 && return 0
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for 5432 PostgreSQL
}

ensure_redis() {
  listening 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for 6379 Redis
}

ensure_nginx() {  # the edge of the local stack: only the binary is needed, tally-stack runs it
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] && return 0
  apt_install nginx-light || apt_install nginx
  nginx -s stop 2>/dev/null || true  # the package starts a system nginx on :80; Tally needs none
}

ensure_chromium() {  # the browser tests drive Debian's Chromium (a test tool's download fails here)
  command -v chromium >/dev/null && return 0
  apt_install chromium
}

ensure_prometheus() {  # the autoscaler's signal is tested on a real Prometheus (and promtool)
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install prometheus
  # The package may start a system Prometheus (and its exporter); the tests run their own.
  pkill -x prometheus 2>/dev/null || true
  pkill -x prometheus-node-exporter 2>/dev/null || true
}

ensure_node() {  # the dashboard's JavaScript checker (TypeScript, from npm) and its unit tests
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  apt_install nodejs npm
}

for server in "${@:-rabbitmq}"; do
  "ensure_${server}"
done
