#!/bin/sh
# One-shot job of docker-compose.yml (image temporalio/admin-tools): create Temporal's two
# PostgreSQL databases and bring their schemas up to this server version. Safe to re-run:
# `create` keeps an existing database, `setup-schema -v 0.0` only adds the version table,
# and `update-schema` applies the versions a database lacks (how a server upgrade is done).
set -eu

: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
schemas=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" -u "$POSTGRES_USER" "$@"
}

setup() {
  echo "PostgreSQL database $1: creating it if missing, then updating its schema"
  sql --db "$1" create
  sql --db "$1" setup-schema -v 0.0
  sql --db "$1" update-schema -d "$schemas/$2/versioned"
}

setup "${DBNAME:-temporal}" temporal
setup "${VISIBILITY_DBNAME:-temporal_visibility}" visibility
echo "Temporal's PostgreSQL schemas are up to date"
