#!/usr/bin/env bash
# Installs dependencies, builds, and runs the demo (README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh release
scripts/demo.sh
