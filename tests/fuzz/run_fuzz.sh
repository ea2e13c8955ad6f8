#!/bin/bash
# run_fuzz.sh FUZZER KEEL_IMG WORKDIR SECONDS: builds the seed corpus, then runs
# the fuzzer on a copy of it for a bounded time. Crashing inputs are kept in
# WORKDIR/artifacts.
set -euo pipefail
FUZZER=$1
KEEL_IMG=$2
WORK=$3
SECONDS_TO_RUN=${4:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$WORK/seeds" "$WORK/corpus"
mkdir -p "$WORK/seeds" "$WORK/corpus" "$WORK/artifacts"
bash "$HERE/make_seeds.sh" "$KEEL_IMG" "$WORK/seeds"
cp "$WORK/seeds"/* "$WORK/corpus/"
echo "seed corpus: $(ls "$WORK/seeds" | wc -l) images, largest $(ls -S -l "$WORK/seeds" | awk 'NR==2 {print $5}') bytes"
exec "$FUZZER" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -timeout=10 -max_len=262144 \
  -artifact_prefix="$WORK/artifacts/" -print_final_stats=1 "$WORK/corpus"
