#!/usr/bin/env bash
# docker compose for make compose-up / compose-down and the container tests:
#   compose.sh [COMPOSE ARGS...]   runs compose on docker-compose.yml with the env file
#                                  TALLY_COMPOSE_ENV_FILE (default .env), written first from
#                                  .env.example with random secrets when it does not exist
#   compose.sh env FILE            only writes such an env file
# The servers run from the images `make images` builds from Debian's packages unless the env
# file or the environment names others (RABBITMQ_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE, S3_IMAGE).
# Compose v2 (`docker compose`) when the machine has it, else Debian's docker-compose 1.29.
set -euo pipefail
cd "$(dirname "$0")/.."

write_env() {  # every CHANGE_ME gets a secret of its own: 32 hex digits, safe inside URLs
  local target=$1
  [ -e "$target" ] && { echo "$target exists: not overwritten" >&2; return 1; }
  (umask 077 && while IFS= read -r line; do
    if [[ $line == *=CHANGE_ME ]]; then
      printf '%s%s\n' "${line%CHANGE_ME}" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    else
      printf '%s\n' "$line"
    fi
  done < .env.example > "$target")
  echo "wrote $target with new secrets (keep it out of git)" >&2
}

if [ "${1:-}" = env ]; then
  write_env "${2:?usage: compose.sh env FILE}"
  exit 0
fi

env_file=${TALLY_COMPOSE_ENV_FILE:-.env}
[ -e "$env_file" ] || write_env "$env_file"

version=${TALLY_VERSION:-dev}
for pair in RABBITMQ_IMAGE=rabbitmq POSTGRES_IMAGE=postgres REDIS_IMAGE=redis S3_IMAGE=s3; do
  name=${pair%%=*}
  if [ -z "${!name:-}" ] && ! grep -q "^$name=" "$env_file"; then
    export "$name=tally/${pair#*=}:$version"
  fi
done

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
exec "${compose[@]}" --env-file "$env_file" -f docker-compose.yml "$@"
