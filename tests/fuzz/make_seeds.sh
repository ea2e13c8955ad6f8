#!/bin/bash
# make_seeds.sh KEEL_IMG OUTDIR: small qcow2 images for the fuzz corpus, made
# with keel-img create/convert (512-byte and 4 KiB clusters keep them small),
# and damaged variants with single header or table fields changed.
set -euo pipefail
KEEL_IMG=$1
OUT=$2
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# A 256 KiB source: text, a run of zeros, a repeated byte, and some noise.
src=$TMP/src.raw
for i in $(seq 1 300); do printf 'keel fuzz seed line %04d\n' "$i"; done >"$src"
truncate -s 65536 "$src"
head -c 8192 /dev/zero | tr '\0' 'Z' >>"$src"
printf '%s' "$(seq 1 2000 | tr -d '\n' | head -c 16384)" >>"$src"
truncate -s 262144 "$src"

img() { "$KEEL_IMG" "$@" >/dev/null; }

img create -q -f qcow2 -o cluster_size=512 "$OUT/empty-512.qcow2" 64K
img create -q -f qcow2 -o cluster_size=4096,extended_l2=off "$OUT/empty-4k.qcow2" 1M
img create -q -f qcow2 -o cluster_size=512,compat=0.10 "$OUT/empty-v2.qcow2" 32K
img convert -f raw -O qcow2 -o cluster_size=512 "$src" "$OUT/data-512.qcow2"
img convert -f raw -O qcow2 -o cluster_size=4096 "$src" "$OUT/data-4k.qcow2"
img convert -c -f raw -O qcow2 -o cluster_size=512 "$src" "$OUT/compressed-512.qcow2"
img convert -c -f raw -O qcow2 -o cluster_size=4096,compression_type=zstd "$src" "$OUT/zstd-4k.qcow2"
img convert -f raw -O qcow2 -o cluster_size=512,refcount_bits=1 "$src" "$OUT/rc1-512.qcow2"
img convert -f raw -O qcow2 -o cluster_size=512,refcount_bits=64 "$src" "$OUT/rc64-512.qcow2"
img convert -f raw -O qcow2 -o cluster_size=512,compat=0.10 "$src" "$OUT/data-v2.qcow2"
img convert -f raw -O qcow2 -o cluster_size=16384,extended_l2=on "$src" "$OUT/extl2-16k.qcow2"
img convert -f raw -O qcow2 -o cluster_size=512,lazy_refcounts=on "$src" "$OUT/lazy-512.qcow2"

# Field helpers: big-endian reads and writes at byte offsets.
get64() { od -An -tu8 --endian=big -j "$2" -N 8 "$1" | tr -d ' '; }
put() {  # put FILE OFFSET BYTES HEXVALUE
  local hex
  hex=$(printf "%0$(($3 * 2))x" "$4")
  printf "$(echo "$hex" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
variant() {  # variant NAME: copy data-512 to NAME and echo its path
  cp "$OUT/data-512.qcow2" "$OUT/$1.qcow2"
  echo "$OUT/$1.qcow2"
}

base=$OUT/data-512.qcow2
l1=$(get64 "$base" 40)
rt=$(get64 "$base" 48)
l2=$(( $(get64 "$base" "$l1") & 0x00fffffffffffe00 ))
rb=$(( $(get64 "$base" "$rt") & 0x00fffffffffffe00 ))

put "$(variant dirty)" 72 8 1                       # dirty bit: writable open repairs
put "$(variant corrupt-bit)" 72 8 2
put "$(variant l1-at-header)" 40 8 0
put "$(variant l1-unaligned)" 40 8 $((l1 + 8))
put "$(variant l1-entry-garbage)" "$l1" 8 0x80ffffffffff0200
put "$(variant l1-entry-is-reftable)" "$l1" 8 $((0x8000000000000000 | rt))
put "$(variant l2-entry-is-l1)" "$l2" 8 $((0x8000000000000000 | l1))
put "$(variant l2-entry-unaligned)" "$l2" 8 $((0x8000000000000000 | (rb + 0x600) + 8))
put "$(variant l2-entry-compressed-garbage)" "$l2" 8 0x40000000000003ff
put "$(variant l2-entry-reserved)" "$l2" 8 $((0x3f000000000001fe | $(get64 "$base" "$l2")))
put "$(variant reftable-entry-garbage)" "$rt" 8 0x00000000deadbe00
put "$(variant refblock-zero)" "$rb" 8 0
put "$(variant snapshots-garbage)" 60 4 3
put "$OUT/snapshots-garbage.qcow2" 64 8 "$l1"
put "$(variant backing-name)" 8 8 400
put "$OUT/backing-name.qcow2" 16 4 16
put "$(variant header-length-big)" 100 4 4096
put "$(variant unknown-feature)" 72 8 0x40
cp "$base" "$OUT/truncated-mid-l2.qcow2"
truncate -s $((l2 + 256)) "$OUT/truncated-mid-l2.qcow2"
cp "$base" "$OUT/truncated-header.qcow2"
truncate -s 200 "$OUT/truncated-header.qcow2"
