#!/usr/bin/env bash
# Runs the XCTest suite under AddressSanitizer and ThreadSanitizer, each build in its own
# scratch path (.build-asan, .build-tsan; ignored by .gitignore), and reports for each:
# whether XCTest passed, how long build + tests took, and how many sanitizer reports there
# were (for ThreadSanitizer, how many involve only OpenBLAS frames and how many our code).
#
#   scripts/sanitize.sh                 # both
#   scripts/sanitize.sh thread          # one of: address thread
#   SWIFT_TEST_ARGS="--filter CABI" scripts/sanitize.sh address
#
# Logs: .build-asan/sanitize.log and .build-tsan/sanitize.log. Exit status: 0 when every
# run passed with no sanitizer report outside the suppressions, 1 otherwise.
#
# OpenBLAS and libdispatch are prebuilt and uninstrumented: ThreadSanitizer sees only the
# memory accesses of our code and the tests, so a race inside them goes unseen, and one it
# reports between our code and theirs may be a false positive (OpenBLAS workers spin on
# flags instead of calling pthread functions). Such reports, if they appear, may be
# suppressed in scripts/tsan.supp (used when present), with a comment for each entry;
# a report with one of our frames in it must never be.
# Leak checking is off by default: what it reports are allocations of Foundation and
# XCTest in the test harness, none in the library. ASAN_OPTIONS=detect_leaks=1 turns it on
# (later options win).
set -uo pipefail
cd "$(dirname "$0")/.."

sanitizers=("$@")
((${#sanitizers[@]})) || sanitizers=(address thread)
read -r -a extra <<<"${SWIFT_TEST_ARGS:-}"

overall=0
summary=()
for sanitizer in "${sanitizers[@]}"; do
  case "$sanitizer" in
    address) scratch=.build-asan ;;
    thread) scratch=.build-tsan ;;
    *) echo "sanitize.sh: unknown sanitizer '$sanitizer' (address or thread)" >&2; exit 2 ;;
  esac
  mkdir -p "$scratch"
  log="$scratch/sanitize.log"
  # Keep going after a report so one run lists them all; print both stacks of a race.
  export ASAN_OPTIONS="halt_on_error=0:detect_leaks=0:${ASAN_OPTIONS:-}"
  suppressions=""
  [ -f scripts/tsan.supp ] && suppressions="suppressions=$PWD/scripts/tsan.supp:"
  export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:${suppressions}${TSAN_OPTIONS:-}"
  echo "== swift test --sanitize=$sanitizer --scratch-path $scratch ${extra[*]:-}"
  start=$(date +%s)
  swift test --sanitize="$sanitizer" --scratch-path "$scratch" "${extra[@]}" >"$log" 2>&1
  status=$?
  seconds=$(($(date +%s) - start))

  reports=$(grep -c -E '^(WARNING: ThreadSanitizer|==[0-9]+==ERROR: AddressSanitizer)' "$log")
  passed=$(grep -E "Executed [0-9]+ tests?" "$log" | tail -n 1 | sed -E 's/^[[:space:]]+//')
  line="$sanitizer: $([ "$status" -eq 0 ] && echo passed || echo "FAILED (exit $status)"), ${seconds}s"
  line+=", ${passed:-no XCTest summary}, $reports sanitizer report(s)"
  if [ "$sanitizer" = thread ] && [ "$reports" -gt 0 ]; then
    # A report is OpenBLAS-only when none of its frames is in our code.
    ours=$(awk '
      /^WARNING: ThreadSanitizer/ { inside = 1; mine = 0; next }
      inside && /(GMMKernels|GMKSupport|_GMK|gmk_|libgmmkernels|Tests)/ { mine = 1 }
      inside && /^SUMMARY: ThreadSanitizer/ { inside = 0; n += mine }
      END { print n + 0 }' "$log")
    line+=" ($ours with our frames, $((reports - ours)) OpenBLAS/runtime only)"
  fi
  suppressed=$(grep -E "^ThreadSanitizer: Matched [0-9]+ suppressions" -A100 "$log" | grep -cE "^[[:space:]]*[0-9]+ race:" || true)
  [ "$sanitizer" = thread ] && [ "$suppressed" -gt 0 ] && line+=", $suppressed suppression(s) matched"
  summary+=("$line")
  echo "$line"
  grep -E "^SUMMARY: (Address|Thread)Sanitizer" "$log" | sort | uniq -c | awk 'NR <= 20 { print "   " $0 }'
  if [ "$status" -ne 0 ] || [ "$reports" -gt 0 ]; then
    overall=1
    echo "   (details in $log)"
  fi
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$overall"
