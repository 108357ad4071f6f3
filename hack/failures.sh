#!/usr/bin/env bash
# failures.sh LOG: the failures in a go test log: each failed test's line
# with its own output under it (at most 40 lines each), any panic, then
# the packages that failed. hack/test.sh prints it last, where CI shows it.
set -uo pipefail
awk '
  function indent(s) { match(s, /^ */); return RLENGTH }
  inside && indent($0) <= depth { inside = 0 }
  /--- FAIL/ { inside = 1; depth = indent($0); n = 0; print; next }
  inside && /--- (PASS|SKIP)/ { next }
  inside { if (++n <= 40) print; else if (n == 41) print "        (more in the log above)"; next }
  /^ *(panic:|fatal error:)/ { print; panicked = 10; next }
  panicked > 0 { print; panicked--; next }
' "$1"
echo
grep -E '^ *FAIL[[:space:]]' "$1" | sed 's/^ *//' | sort -u
grep -E '^fuzz .*(FAIL|failed)' "$1" || true
