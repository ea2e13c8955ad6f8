#!/usr/bin/env bash
# Configures and builds keel. Usage: scripts/build.sh [release|asan|fuzz|tsan] [TARGET...]
#   release: build/        (optimised, with debug info)
#   asan:    build-asan/   (AddressSanitizer + UndefinedBehaviorSanitizer)
#   fuzz:    build-fuzz/   (clang, libFuzzer targets)
#   tsan:    build-tsan/   (ThreadSanitizer)
# With TARGETs only those are built (and what they need); otherwise everything.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-release}
jobs=$(nproc)
case "$kind" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DKEEL_SANITIZE=ON) ;;
  fuzz) dir=build-fuzz; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++) ;;
  tsan) dir=build-tsan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_TSAN=ON) ;;
  *) echo "usage: $0 [release|asan|fuzz|tsan] [TARGET...]" >&2; exit 2 ;;
esac
shift || true
targets=()
for t in "$@"; do targets+=(--target "$t"); done
# ccache shares results between checkouts and build directories.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$jobs" "${targets[@]}"
