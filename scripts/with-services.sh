#!/usr/bin/env bash
# Runs a command with the named local services up, then stops only those it started:
#   scripts/with-services.sh redis postgres kafka -- swift test
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
services=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do services+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ $# -gt 0 ] || { echo "usage: $0 SERVICE... -- COMMAND..." >&2; exit 2; }

started=()
cleanup() {
  local s
  for s in "${started[@]}"; do "$here/services.sh" stop "$s" || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for s in "${services[@]}"; do
  if ! "$here/services.sh" running "$s"; then
    "$here/services.sh" start "$s"
    started+=("$s")
  fi
done
set -a
eval "$("$here/services.sh" env)"
set +a
status=0
"$@" || status=$?
exit $status
