#!/usr/bin/env bash
# keel's main job on a built-in example: create a qcow2 image, fill it with
# data by converting a generated raw image into it, convert it back out with
# compression, show what keel-img and qemu-img say about the result, and
# drive a scratch image request by request with keel-io.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== Generate a 64 MiB raw disk: 8 MiB of data, the rest zeros"
head -c 8M /dev/urandom > "$work/disk.raw"
printf 'keel demo %.0s' $(seq 1 100000) >> "$work/disk.raw"
truncate -s 64M "$work/disk.raw"

echo "== keel-img create -f qcow2 disk.qcow2 64M"
"$bin/keel-img" create -f qcow2 "$work/disk.qcow2" 64M
echo "== keel-img convert -n -O qcow2 disk.raw disk.qcow2 (write the data into it)"
"$bin/keel-img" convert -p -n -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
echo "== keel-img convert -c -O qcow2 -o compression_type=zstd (compressed copy)"
"$bin/keel-img" convert -p -c -O qcow2 -o compression_type=zstd "$work/disk.qcow2" "$work/small.qcow2"
echo "== keel-img info small.qcow2"
"$bin/keel-img" info "$work/small.qcow2"
echo "== keel-img check small.qcow2"
"$bin/keel-img" check "$work/small.qcow2"
echo "== qemu-img compare disk.raw small.qcow2 (the peer reads keel's image)"
qemu-img compare "$work/disk.raw" "$work/small.qcow2"
echo "== keel-io: write a pattern, zero a range, read it back, show the allocation"
"$bin/keel-img" create -q -f qcow2 "$work/scratch.qcow2" 1M
"$bin/keel-io" -f qcow2 -c 'write -P 0x6b 0 128k' -c 'write -z -u 64k 64k' -c 'read -P 0x6b 0 64k' \
  -c 'read -P 0 64k 64k' -c map "$work/scratch.qcow2"
