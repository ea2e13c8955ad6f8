#!/usr/bin/env bash
# bench/convert.sh: compare `keel-img convert` with `qemu-img convert`.
#
# This is a measurement script, not a test: it never fails because keel is
# slow, only when a tool fails or produces an output that is not equivalent
# to its input. It is deliberately not registered with CTest.
#
# It generates (once, cached in $BENCH_DIR, else in a temporary directory that
# is removed on exit) a raw source image made of 64 MiB segments rotating
# through four kinds of content:
#   random      incompressible data from /dev/urandom
#   text        compressible, varied text (roughly 4:1 with zlib)
#   hole        never written: a hole in the sparse file
#   zeros       zeros written explicitly: allocated blocks that read as zero
# and a qcow2 copy of it (made by qemu-img) for the qcow2->raw case.
#
# Cases (both tools get exactly the same arguments and the same input):
#   raw->qcow2        convert -f raw   -O qcow2 SRC OUT
#   qcow2->raw        convert -f qcow2 -O raw   SRC.qcow2 OUT
#   raw->qcow2 zstd   convert -f raw   -O qcow2 -c -o compression_type=zstd SRC OUT
#   raw->qcow2 zlib   convert -f raw   -O qcow2 -c -o compression_type=zlib SRC OUT
# and, to show what the output cache mode is worth, the two uncompressed
# cases again with `-t none` (O_DIRECT plus a final flush) given to both:
#   raw->qcow2 -t none    convert -t none -f raw   -O qcow2 SRC OUT
#   qcow2->raw -t none    convert -t none -f qcow2 -O raw   SRC.qcow2 OUT
#
# Each repetition runs qemu-img then keel-img (alternating which goes first
# on every repetition). Before each timed run the output is removed,
# dirty data is written back with `sync` (untimed), the script waits
# --settle seconds (default 6) so that memory freed by the deletion goes back
# to where a fresh command would find it (in a virtual machine with free page
# reporting, the hypervisor; without the wait, the next run reuses pages that
# are still backed and writes into the page cache several times faster than
# a run on a settled machine), and the page cache is prepared the same way
# for both tools:
#   --cache warm  (default) the source file is read once with cat, so the
#                 source is served from the page cache; no root needed.
#   --cache drop  `echo 3 > /proc/sys/vm/drop_caches` after the sync (needs
#                 write access to that file, i.e. root); cold reads.
# The timed region is the convert process alone (date +%s.%N around it; no
# hyperfine needed); with --sync it also includes a `sync -f` of the output's
# filesystem, so the writeback of the data the tool left dirty is charged to it.
#
# Every output is checked after its run: `qemu-img compare` against the
# source must report identical contents, `qemu-img check` must find no
# errors in a qcow2 output, and a compressed output must carry the requested
# compression type and contain compressed clusters.
#
# Usage: bench/convert.sh [--size 3G] [--reps 3] [--keel PATH] [--qemu PATH]
#                         [--cache warm|drop] [--settle SECONDS] [--sync] [--cases LIST]
#                         [--generate-only]
#   --generate-only builds the cached source images in $BENCH_DIR and exits.
#   --cases takes a comma-separated subset of:
#           raw-qcow2,qcow2-raw,zstd,zlib,raw-qcow2-none,qcow2-raw-none
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

size_text=3G
reps=3
keel="$repo_root/build/bin/keel-img"
qemu="qemu-img"
cache_policy=warm
sync_in_timing=0
cases="raw-qcow2,qcow2-raw,zstd,zlib,raw-qcow2-none,qcow2-raw-none"
settle=6
generate_only=0

usage() {
  sed -n '/^# Usage:/,/qcow2-raw-none$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_text=$2; shift 2 ;;
    --size=*) size_text=${1#*=}; shift ;;
    --reps) reps=$2; shift 2 ;;
    --reps=*) reps=${1#*=}; shift ;;
    --keel) keel=$2; shift 2 ;;
    --keel=*) keel=${1#*=}; shift ;;
    --qemu) qemu=$2; shift 2 ;;
    --qemu=*) qemu=${1#*=}; shift ;;
    --cache) cache_policy=$2; shift 2 ;;
    --cache=*) cache_policy=${1#*=}; shift ;;
    --settle) settle=$2; shift 2 ;;
    --settle=*) settle=${1#*=}; shift ;;
    --sync) sync_in_timing=1; shift ;;
    --generate-only) generate_only=1; shift ;;
    --cases) cases=$2; shift 2 ;;
    --cases=*) cases=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "convert.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "convert.sh: $*" >&2; exit 1; }

# --- arguments -------------------------------------------------------------

# Size with an optional k/M/G/T suffix (1024-based), in MiB.
size_mib() {
  local t=$1 n unit
  n=${t%[kKmMgGtT]}
  unit=${t#"$n"}
  [[ $n =~ ^[0-9]+$ ]] || die "invalid --size: $t"
  case "$unit" in
    k|K) echo $(( n / 1024 )) ;;
    m|M) echo "$n" ;;
    g|G) echo $(( n * 1024 )) ;;
    t|T) echo $(( n * 1024 * 1024 )) ;;
    "") echo $(( n / 1048576 )) ;;
  esac
}
total_mib=$(size_mib "$size_text")
[ "$total_mib" -ge 4 ] || die "--size must be at least 4M"
[[ $reps =~ ^[1-9][0-9]*$ ]] || die "invalid --reps: $reps"
[[ $settle =~ ^[0-9]+$ ]] || die "invalid --settle: $settle"
case "$cache_policy" in
  warm) ;;
  drop) [ -w /proc/sys/vm/drop_caches ] || die "--cache drop needs write access to /proc/sys/vm/drop_caches" ;;
  *) die "--cache must be warm or drop" ;;
esac
case "$keel" in /*) ;; *) keel="$repo_root/$keel" ;; esac
[ -x "$keel" ] || die "keel-img not found at $keel (build it, or pass --keel PATH)"
command -v "$qemu" >/dev/null || die "qemu-img not found ($qemu)"

# --- work directory and source image ---------------------------------------

if [ -n "${BENCH_DIR:-}" ]; then
  work=$BENCH_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
work=$(cd "$work" && pwd)

# Bump when the generated content changes, so cached sources are rebuilt.
generator=1
src="$work/src-${total_mib}M.raw"
src_qcow2="$work/src-${total_mib}M.qcow2"
stamp="$work/src-${total_mib}M.stamp"
out="$work/out.img"

segment_mib=64
if [ $(( total_mib / 4 )) -lt $segment_mib ]; then segment_mib=$(( total_mib / 4 )); fi

# 64 MiB of varied text (log-like lines with counters and words), repeated to
# fill text segments; deflate gets roughly 4:1 on it, so compressed output is
# neither trivial nor incompressible.
make_text() {
  awk -v bytes=$(( segment_mib * 1048576 )) 'BEGIN {
    split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa", w, " ");
    srand(42); n = 0; i = 0;
    while (n < bytes) {
      line = sprintf("%08d %s %s host-%03d status=%d latency=%.3fms path=/srv/%s/%s/%d\n",
                     i, w[int(rand()*16)+1], w[int(rand()*16)+1], int(rand()*200), int(rand()*5)*100+200,
                     rand()*50, w[int(rand()*16)+1], w[int(rand()*16)+1], int(rand()*100000));
      printf "%s", line; n += length(line); i++;
    }
  }'
}

generate() {
  echo "Generating ${total_mib} MiB source image in $work (cached for later runs)..." >&2
  rm -f "$src" "$src_qcow2" "$stamp"
  local text="$work/text.seg" segments i kind
  make_text > "$text"
  truncate -s "${segment_mib}M" "$text"
  : > "$src"
  segments=$(( total_mib / segment_mib ))
  for (( i = 0; i < segments; i++ )); do
    kind=$(( i % 4 ))
    case $kind in
      0) dd if=/dev/urandom of="$src" bs=1M count=$segment_mib seek=$(( i * segment_mib )) conv=notrunc \
           iflag=fullblock status=none ;;
      1) dd if="$text" of="$src" bs=1M seek=$(( i * segment_mib )) conv=notrunc status=none ;;
      2) ;;  # hole
      3) dd if=/dev/zero of="$src" bs=1M count=$segment_mib seek=$(( i * segment_mib )) conv=notrunc status=none ;;
    esac
  done
  truncate -s "${total_mib}M" "$src"
  rm -f "$text"
  "$qemu" convert -f raw -O qcow2 "$src" "$src_qcow2"
  sync
  echo "$generator $total_mib $segment_mib" > "$stamp"
}

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$generator $total_mib $segment_mib" ] || [ ! -f "$src" ] || [ ! -f "$src_qcow2" ]; then
  generate
fi
if [ "$generate_only" = 1 ]; then
  ls -ls "$src" "$src_qcow2"
  exit 0
fi

# --- running and checking ---------------------------------------------------

prepare_cache() {
  sync
  sleep "$settle"
  if [ "$cache_policy" = drop ]; then
    echo 3 > /proc/sys/vm/drop_caches
  else
    cat "$1" > /dev/null
  fi
}

# run_once TOOL INPUT ARGS... : times one convert; prints "wall cpu maxrss_kib".
run_once() {
  local tool=$1 input=$2; shift 2
  rm -f "$out"
  prepare_cache "$input"
  local t0 t1 timing="$work/time.txt"
  t0=$(date +%s.%N)
  /usr/bin/time -o "$timing" -f "%U %S %M" "$tool" convert "$@" "$out" ||
    die "$(basename "$tool") convert $* failed"
  if [ "$sync_in_timing" = 1 ]; then sync -f "$out"; fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" '{ printf "%.3f %.3f %d\n", b - a, $1 + $2, $3 }' "$timing"
}

# verify TOOL_NAME OUT_FORMAT COMPRESSION : the output must equal the source.
verify() {
  local name=$1 fmt=$2 compression=$3 rc=0
  "$qemu" compare -q -f raw -F "$fmt" "$src" "$out" || rc=$?
  [ $rc -eq 0 ] || die "$name: output differs from the source (qemu-img compare exit $rc)"
  if [ "$fmt" = qcow2 ]; then
    "$qemu" check -q -f qcow2 "$out" || die "$name: qemu-img check reports problems in the output"
    if [ -n "$compression" ]; then
      local info check
      info=$("$qemu" info --output=json -f qcow2 "$out")
      grep -q "\"compression-type\": \"$compression\"" <<<"$info" ||
        die "$name: output does not use compression type $compression"
      check=$("$qemu" check --output=json -f qcow2 "$out")
      grep -q '"compressed-clusters": [1-9]' <<<"$check" || die "$name: output has no compressed clusters"
    fi
  fi
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

results="$work/results.txt"
: > "$results"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

run_case() {
  local label=$1 input=$2 fmt=$3 compression=$4; shift 4
  local args=("$@") r q_wall=() k_wall=() q_cpu=() k_cpu=() q_rss=() k_rss=() q_size k_size
  echo "== $label: convert ${args[*]} OUT" >&2
  for (( r = 1; r <= reps; r++ )); do
    local order=(qemu keel) who line
    if (( r % 2 == 0 )); then order=(keel qemu); fi
    for who in "${order[@]}"; do
      if [ "$who" = qemu ]; then
        line=$(run_once "$qemu" "$input" "${args[@]}")
        verify qemu-img "$fmt" "$compression"
        q_size=$(du -k "$out" | cut -f1)
        read -r w c m <<<"$line"; q_wall+=("$w"); q_cpu+=("$c"); q_rss+=("$m")
      else
        line=$(run_once "$keel" "$input" "${args[@]}")
        verify keel-img "$fmt" "$compression"
        k_size=$(du -k "$out" | cut -f1)
        read -r w c m <<<"$line"; k_wall+=("$w"); k_cpu+=("$c"); k_rss+=("$m")
      fi
      echo "   rep $r $who: wall ${w}s cpu ${c}s maxrss ${m}KiB" >&2
    done
  done
  rm -f "$out"
  local qw kw qc kc qm km
  qw=$(printf '%s\n' "${q_wall[@]}" | median); kw=$(printf '%s\n' "${k_wall[@]}" | median)
  qc=$(printf '%s\n' "${q_cpu[@]}" | median); kc=$(printf '%s\n' "${k_cpu[@]}" | median)
  qm=$(printf '%s\n' "${q_rss[@]}" | median); km=$(printf '%s\n' "${k_rss[@]}" | median)
  local qmin kmin
  qmin=$(printf '%s\n' "${q_wall[@]}" | sort -g | head -1); kmin=$(printf '%s\n' "${k_wall[@]}" | sort -g | head -1)
  echo "$label|$qw|$kw|$qc|$kc|$q_size|$k_size|$qm|$km|$qmin|$kmin" >> "$results"
}

IFS=, read -r -a wanted <<<"$cases"
for c in "${wanted[@]}"; do
  case "$c" in
    raw-qcow2) run_case "raw->qcow2" "$src" qcow2 "" -f raw -O qcow2 "$src" ;;
    qcow2-raw) run_case "qcow2->raw" "$src_qcow2" raw "" -f qcow2 -O raw "$src_qcow2" ;;
    zstd) run_case "raw->qcow2 -c zstd" "$src" qcow2 zstd -f raw -O qcow2 -c -o compression_type=zstd "$src" ;;
    zlib) run_case "raw->qcow2 -c zlib" "$src" qcow2 zlib -f raw -O qcow2 -c -o compression_type=zlib "$src" ;;
    raw-qcow2-none) run_case "raw->qcow2 -t none" "$src" qcow2 "" -t none -f raw -O qcow2 "$src" ;;
    qcow2-raw-none) run_case "qcow2->raw -t none" "$src_qcow2" raw "" -t none -f qcow2 -O raw "$src_qcow2" ;;
    *) die "unknown case: $c" ;;
  esac
done

# --- report -----------------------------------------------------------------

echo
echo "convert benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), source ${total_mib} MiB, $reps reps (median), cache=$cache_policy, settle ${settle}s$( [ "$sync_in_timing" = 1 ] && echo ", sync timed")"
echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), work dir on $(df -PT "$work" | awk 'NR == 2 { print $2 }') ($work)"
echo "load average (1/5/15 min): $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "qemu: $("$qemu" --version | head -1)"
echo "keel: $("$keel" --version | head -1) ($keel)"
echo
printf '| %-18s | %10s | %10s | %9s | %14s | %13s | %13s | %13s | %14s |\n' \
  case "qemu-img s" "keel-img s" "ratio q/k" "min s q / k" "min ratio q/k" "cpu s q / k" "out MiB q / k" "maxrss MiB q / k"
echo "|--------------------|-----------:|-----------:|----------:|---------------:|--------------:|--------------:|--------------:|-----------------:|"
while IFS='|' read -r label qw kw qc kc qs ks qm km qmin kmin; do
  awk -v l="$label" -v qw="$qw" -v kw="$kw" -v qc="$qc" -v kc="$kc" -v qs="$qs" -v ks="$ks" -v qm="$qm" -v km="$km" \
      -v qmin="$qmin" -v kmin="$kmin" 'BEGIN {
    printf "| %-18s | %10.2f | %10.2f | %9.2f | %6.2f / %-5.2f | %13.2f | %5.2f / %-5.2f | %5d / %-5d | %6d / %-6d |\n",
           l, qw, kw, (kw > 0 ? qw / kw : 0), qmin, kmin, (kmin > 0 ? qmin / kmin : 0), qc, kc, qs / 1024, ks / 1024, qm / 1024, km / 1024 }'
done < "$results"
echo
echo "ratio = qemu-img seconds / keel-img seconds (wall clock, median of $reps): > 1 means keel-img is faster."
echo "min = fastest of the $reps runs (noise only ever adds time); cpu = user + system seconds (median), all threads."
