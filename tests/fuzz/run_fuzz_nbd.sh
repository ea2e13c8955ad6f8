#!/bin/bash
# run_fuzz_nbd.sh FUZZER WORKDIR SECONDS: writes a tiny seed corpus of NBD
# client handshakes (the input layout is described in
# fuzz_nbd_negotiation.cpp), then runs the fuzzer on a copy of it for a
# bounded time. Crashing inputs are kept in WORKDIR/artifacts.
set -euo pipefail
FUZZER=$1
WORK=$2
SECONDS_TO_RUN=${3:-30}
rm -rf "$WORK/seeds" "$WORK/corpus"
mkdir -p "$WORK/seeds" "$WORK/corpus" "$WORK/artifacts"

# Client pieces, as printf escapes: client flags, option headers.
FLAGS='\x00\x00\x00\x03'
opt() {  # opt CODE LENGTH: IHAVEOPT, u32 option, u32 length (both < 256)
  printf 'IHAVEOPT\\x00\\x00\\x00\\x%02x\\x00\\x00\\x00\\x%02x' "$1" "$2"
}
GO_DISK0="$(opt 7 11)\x00\x00\x00\x05disk0\x00\x00"
SET_META="$(opt 10 32)\x00\x00\x00\x05disk0\x00\x00\x00\x01\x00\x00\x00\x0fbase:allocation"
REQUEST='\x25\x60\x95\x13\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01'
REQUEST+='\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00'
EXT_REQUEST='\x21\xe4\x1c\x71\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00'
EXT_REQUEST+='\x00\x00\x00\x00\x00\x00\x10\x00'

seed() { printf "$2" >"$WORK/seeds/$1"; }
seed go "\x00\x00${FLAGS}${GO_DISK0}${REQUEST}"
seed list-info "\x00\x02\x05\x03${FLAGS}$(opt 3 0)$(opt 6 15)\x00\x00\x00\x05disk0\x00\x02\x00\x01\x00\x02$(opt 2 0)"
seed meta "\x00\x01\x11${FLAGS}$(opt 8 0)$(opt 9 13)\x00\x00\x00\x05disk0\x00\x00\x00\x00${SET_META}${GO_DISK0}"
seed extended "\x00\x00${FLAGS}$(opt 11 0)${SET_META}${GO_DISK0}${EXT_REQUEST}"
seed export-name "\x08\x00${FLAGS}$(opt 8 0)$(opt 1 0)${REQUEST}"
seed tls "\x01\x03\x01\x07\x13${FLAGS}$(opt 3 0)$(opt 5 0)$(opt 8 0)${GO_DISK0}"
seed bad-flags "\x00\x00\x00\x00\x00\x10"

cp "$WORK/seeds"/* "$WORK/corpus/"
echo "seed corpus: $(ls "$WORK/seeds" | wc -l) handshakes"
exec "$FUZZER" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -timeout=10 -max_len=4096 \
  -artifact_prefix="$WORK/artifacts/" -print_final_stats=1 "$WORK/corpus"
