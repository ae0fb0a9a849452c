#!/usr/bin/env bash
# `swift test`, printing every failure (compiler errors, failed assertions and test cases)
# and the summary instead of the whole log; the full log is kept when something failed.
log=$(mktemp "${TMPDIR:-/tmp}/swift-test.XXXXXX")
swift test >"$log" 2>&1
status=$?
grep -E "error:|Test Case .* failed|Executed [0-9]+ tests" "$log" | awk '!seen[$0]++'
if [ "$status" -ne 0 ]; then
    echo "swift test failed (exit status $status); the whole log: $log"
else
    rm -f "$log"
fi
exit "$status"
