#!/bin/sh
# The official image's variables: the default user is created on the node's first start.
set -eu
conf=/etc/rabbitmq/conf.d/10-tally.conf
{
  echo "listeners.tcp.default = 5672"
  echo "loopback_users = none"
  if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
    echo "default_user = ${RABBITMQ_DEFAULT_USER}"
    echo "default_pass = ${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS goes with RABBITMQ_DEFAULT_USER}"
  fi
} > "$conf"
exec "$@"
