#!/usr/bin/env bash
# Installs every Debian package keel needs to build, test and benchmark.
# Idempotent: when everything is present it only checks, which takes a moment.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  zlib1g-dev libzstd-dev liburing-dev libssl-dev libcurl4-openssl-dev libnbd-dev
  nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev libedit-dev
  clang libclang-rt-14-dev
  qemu-utils nbdkit libnbd-bin python3-libnbd fio python3 strace openssl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
