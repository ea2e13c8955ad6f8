#!/bin/bash
# run_fuzz_nbd_transmission.sh FUZZER WORKDIR SECONDS: writes a small seed
# corpus of NBD transmission-phase client streams (the layout is described in
# fuzz_nbd_transmission.cpp), then runs the fuzzer on a copy of it for a
# bounded time. Crashing inputs are kept in WORKDIR/artifacts.
set -euo pipefail
FUZZER=$1
WORK=$2
SECONDS_TO_RUN=${3:-30}
rm -rf "$WORK/seeds" "$WORK/corpus"
mkdir -p "$WORK/seeds" "$WORK/corpus" "$WORK/artifacts"

hex32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
# req TYPE FLAGS OFFSET LENGTH: a compact request (cookie 1; offset and length below 2^32).
req() { printf '\\x25\\x60\\x95\\x13\\x%02x\\x%02x\\x00\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01' \
  $(($2 >> 8)) $(($2 & 255)) "$1"; printf '\\x00\\x00\\x00\\x00'; hex32 "$3"; hex32 "$4"; }
# ext TYPE FLAGS OFFSET LENGTH: an extended request.
ext() { printf '\\x21\\xe4\\x1c\\x71\\x%02x\\x%02x\\x00\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02' \
  $(($2 >> 8)) $(($2 & 255)) "$1"; printf '\\x00\\x00\\x00\\x00'; hex32 "$3"; printf '\\x00\\x00\\x00\\x00'; hex32 "$4"; }
DATA='\x61\x62\x63\x64\x65\x66\x67\x68'
DISC="$(req 2 0 0 0)"

seed() { printf "$2" >"$WORK/seeds/$1"; }
seed simple "\x00$(req 1 1 4096 8)${DATA}$(req 0 0 4096 8)$(req 3 0 0 0)$(req 6 0 0 65536)$(req 4 0 8192 4096)${DISC}"
seed structured "\x05$(req 1 0 0 8)${DATA}$(req 0 0 0 65536)$(req 7 0 0 1048576)$(req 7 8 0 4096)$(req 5 0 0 512)${DISC}"
seed extended "\x07$(ext 1 0 512 8)${DATA}$(ext 0 4 0 4096)$(ext 7 0 0 1048576)$(ext 6 16 0 4096)${DISC}"
seed read-only "\x08$(req 1 0 0 8)${DATA}$(req 0 0 0 512)$(req 6 0 0 512)"
seed errors "\x01$(req 0 0 1048576 512)$(req 42 0 0 0)$(req 0 512 0 0)$(req 1 0 1048000 1024)"
seed oversized "\x00$(req 0 0 0 33554433)$(req 1 0 0 33554433)"

cp "$WORK/seeds"/* "$WORK/corpus/"
echo "seed corpus: $(ls "$WORK/seeds" | wc -l) client streams"
exec "$FUZZER" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -timeout=30 -max_len=4096 \
  -artifact_prefix="$WORK/artifacts/" -print_final_stats=1 "$WORK/corpus"
