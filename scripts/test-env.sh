#!/usr/bin/env bash
# Runs a command against the tests' own stores: Redis database 9 and the PostgreSQL database
# prewarm_test (scripts/services.sh creates it), so that what the tests leave behind never
# shows in `make demo` or `prewarmctl status` on the default database.
#   scripts/with-services.sh redis postgres kafka -- scripts/test-env.sh swift test
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND..." >&2; exit 2; }
export PREWARM_REDIS_DB=9
export PREWARM_POSTGRES_URL="${PREWARM_POSTGRES_URL/dbname=prewarm /dbname=prewarm_test }"
exec "$@"
