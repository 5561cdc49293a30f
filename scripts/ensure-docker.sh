#!/usr/bin/env bash
# A Docker engine for make images, make compose-up and the container tests.
#   ensure-docker.sh        use a running engine; else install what is missing from Debian's
#                           packages (docker.io, docker-compose, debootstrap) and start dockerd
#                           in the background (log: /var/log/tally-dockerd.log)
#   ensure-docker.sh stop   stop the engine, only if this script started it
# It touches nothing else: the machine's own PostgreSQL, Redis and RabbitMQ stay as they are,
# and containers publish nothing but the compose edge, on 127.0.0.1.
set -euo pipefail

DOCKER=/usr/bin/docker  # Debian's client (its BuildKit builds without buildx)
STARTED=/run/tally-dockerd.started

if [ "${1:-}" = stop ]; then
  if [ -e "$STARTED" ]; then
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      echo "stopped the Docker engine this machine's tests started"
    fi
    rm -f "$STARTED"
  fi
  exit 0
fi

missing=()
[ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian's packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

"$DOCKER" info >/dev/null 2>&1 && exit 0
echo "starting the Docker engine (dockerd)"
nohup /usr/sbin/dockerd >/var/log/tally-dockerd.log 2>&1 &
touch "$STARTED"
for _ in $(seq 1 120); do
  "$DOCKER" info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not answer within 60 s; see /var/log/tally-dockerd.log" >&2
tail -n 20 /var/log/tally-dockerd.log >&2
exit 1
