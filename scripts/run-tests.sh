#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite: the optimised
# build, the same suite under AddressSanitizer + UndefinedBehaviorSanitizer,
# the NBD server's concurrency tests under ThreadSanitizer, and the libFuzzer
# targets for a bounded time (README's second command; CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
jobs=$(nproc)

scripts/build.sh release
(cd build && ctest --output-on-failure -j "$jobs")

scripts/build.sh asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j "$jobs" -LE slow)

# ThreadSanitizer: only the server and its concurrency tests are built. keel-nbd runs as the tests' child with its
# output on /dev/null, so its reports go to files, and any report fails the run.
scripts/build.sh tsan keel-nbd robustness_nbd_load unit_loop engine_backend interop_nbd_tls
rm -rf build-tsan/tsan-reports && mkdir -p build-tsan/tsan-reports
tsan_cases='^(Aio/NbdLoadTest|Backends/LoopTest|RunOn|BlockBackendLoops)\.|^NbdTls\.SessionsOnConnectionThreads'
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1:log_path=$PWD/tsan-reports/report" \
  ctest --output-on-failure -j "$jobs" -R "$tsan_cases")
if compgen -G "build-tsan/tsan-reports/report*" >/dev/null; then
  cat build-tsan/tsan-reports/report* >&2
  exit 1
fi

scripts/build.sh fuzz
(cd build-fuzz && ctest --output-on-failure -j "$jobs" -L fuzz)
