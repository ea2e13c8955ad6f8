#!/usr/bin/env bash
# bench/nbd.sh: keel-nbd against qemu-nbd and nbdkit serving the same image.
#
# A measurement script, not a test (not registered with CTest): it fails only
# when a tool fails. Each server serves a private copy of the same image on a
# Unix socket, with its default (page-cache) cache mode: the like-for-like
# comparison. nbdkit's file plugin serves raw only (Debian 12's nbdkit 1.32
# has no qcow2 filter), so for qcow2 the comparison is with qemu-nbd.
#
# Workloads, one server at a time, the order of servers rotating per repetition:
#   seq-read     nbdcopy --connections=1 URI null:        (the whole image)
#   seq-write    nbdcopy --connections=1 SOURCE URI       (into the export)
#   rand-read    fio --ioengine=nbd --rw=randread  --bs=4k --iodepth=32 (--runtime seconds)
#   rand-write   fio --ioengine=nbd --rw=randwrite --bs=4k --iodepth=32
# The figure is throughput (MiB/s) for the copies and IOPS for fio; the
# median of --reps repetitions is printed with keel's ratio to the better peer.
#
# Usage: bench/nbd.sh [--size MiB] [--reps N] [--runtime S] [--keel build/bin/keel-nbd]
set -euo pipefail

size_mib=1024 reps=3 runtime=10 keel=build/bin/keel-nbd
while (($#)); do
  case $1 in
    --size) size_mib=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --keel) keel=$2; shift 2 ;;
    *) echo "usage: $0 [--size MiB] [--reps N] [--runtime S] [--keel PATH]" >&2; exit 2 ;;
  esac
done
keel=$(realpath "$keel")
work=$(mktemp -d /var/tmp/keel-bench-nbd.XXXXXX)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Half random data, half holes, so reads see both data and sparse replies.
head -c $((size_mib / 2))M /dev/urandom >"$work/source.raw"
truncate -s ${size_mib}M "$work/source.raw"
qemu-img convert -f raw -O qcow2 "$work/source.raw" "$work/source.qcow2"

start_server() {  # start_server NAME FORMAT IMAGE SOCKET
  local name=$1 format=$2 image=$3 sock=$4
  rm -f "$sock"
  case $name in
    keel-nbd) "$keel" -t -e 0 -k "$sock" -f "$format" "$image" & ;;
    qemu-nbd) qemu-nbd -t -e 0 -k "$sock" -f "$format" "$image" & ;;
    nbdkit) nbdkit -f -U "$sock" file "$image" & ;;
  esac
  server_pid=$!
  for _ in $(seq 200); do
    [[ -S $sock ]] && nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "$name did not start" >&2
  exit 1
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

now() { date +%s.%N; }

# fio's nbd engine prints a line before its JSON.
iops_of() {
  python3 -c "import json, sys; t = sys.stdin.read(); j = json.loads(t[t.index('{'):])
print(round(j['jobs'][0]['$1']['iops']))"
}

run_workload() {  # run_workload WORKLOAD URI -> prints the figure
  local workload=$1 uri=$2 t0 t1
  case $workload in
    seq-read)
      t0=$(now); nbdcopy --connections=1 "$uri" null:; t1=$(now)
      echo "$size_mib $t0 $t1" | awk '{printf "%.1f\n", $1 / ($3 - $2)}' ;;
    seq-write)
      t0=$(now); nbdcopy --connections=1 "$work/source.raw" "$uri"; t1=$(now)
      echo "$size_mib $t0 $t1" | awk '{printf "%.1f\n", $1 / ($3 - $2)}' ;;
    rand-read|rand-write)
      local rw=${workload#rand-}
      fio --name=bench --ioengine=nbd --uri="$uri" --rw=rand$rw --bs=4k --iodepth=32 --runtime="$runtime" \
        --time_based --size=${size_mib}M --output-format=json 2>/dev/null |
        iops_of "$rw" ;;
  esac
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

printf "%-7s %-11s %12s %12s %12s %8s\n" format workload keel-nbd qemu-nbd nbdkit ratio
for format in raw qcow2; do
  servers=(keel-nbd qemu-nbd)
  [[ $format == raw ]] && servers+=(nbdkit)
  for workload in seq-read seq-write rand-read rand-write; do
    declare -A results=()
    for rep in $(seq "$reps"); do
      for i in "${!servers[@]}"; do
        name=${servers[$(((i + rep) % ${#servers[@]}))]}
        image="$work/$name.$format"
        cp --sparse=always "$work/source.$format" "$image"
        sync
        start_server "$name" "$format" "$image" "$work/$name.sock"
        results[$name]+="$(run_workload "$workload" "nbd+unix:///?socket=$work/$name.sock") "
        stop_server
        rm -f "$image"
      done
    done
    k=$(tr ' ' '\n' <<<"${results[keel-nbd]}" | grep . | median)
    q=$(tr ' ' '\n' <<<"${results[qemu-nbd]}" | grep . | median)
    n=-
    [[ -n ${results[nbdkit]:-} ]] && n=$(tr ' ' '\n' <<<"${results[nbdkit]}" | grep . | median)
    best=$(printf "%s\n%s\n" "$q" "$n" | grep -v '^-$' | sort -n | tail -1)
    ratio=$(awk -v k="$k" -v b="$best" 'BEGIN {printf "%.2f", k / b}')
    printf "%-7s %-11s %12s %12s %12s %8s\n" "$format" "$workload" "$k" "$q" "$n" "${ratio}x"
    unset results
  done
done
