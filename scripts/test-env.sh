#!/usr/bin/env bash
# Runs a command against the tests' own stores: Redis database 9 and the PostgreSQL database
# prewarm_test (scripts/services.sh creates it), so that what the tests leave behind never
# shows in `make demo` or `prewarmctl status` on the default database.
#   scripts/with-services.sh redis postgres kafka -- scripts/test-env.sh swift test
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND..." >&2; exit 2; }
export PREWARM_REDIS_DB=9
# At most 8 tests at once (swift-testing's own limit; set it to change it). Every test at once
# on CI's two cores stalled a task for 4-6 s (a lease expired before its first check, an HTTP
# call missed its deadline) in run after run; 8 at once took 153 s here against 118 s.
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH="${SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH:-8}"
export PREWARM_POSTGRES_URL="${PREWARM_POSTGRES_URL/dbname=prewarm /dbname=prewarm_test }"
exec "$@"
