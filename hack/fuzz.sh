#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short time each.
# usage: hack/fuzz.sh [DURATION]   (default 30s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $target ($fuzztime)"
    log=$(mktemp)
    # Any failed run fails, "context deadline exceeded" included: it is
    # the fuzzer's own failure too (a target slower than its deadline).
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
      cat "$log"
      echo "fuzz $pkg $target: FAILED (its output is above)"
      status=1
    fi
    rm -f "$log"
  done
done
exit $status
