#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite: the optimised
# build, the same suite under AddressSanitizer + UndefinedBehaviorSanitizer,
# and the libFuzzer targets for a bounded time (README's second command; CI
# runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
jobs=$(nproc)

scripts/build.sh release
(cd build && ctest --output-on-failure -j "$jobs")

scripts/build.sh asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j "$jobs" -LE slow)

scripts/build.sh fuzz
(cd build-fuzz && ctest --output-on-failure -j "$jobs" -L fuzz)
