#!/usr/bin/env bash
# The engine's layers point one way: base <- block <- formats, nbd, hw <- tools, vmm.
# Fails, naming the file and the include, when a folder includes from a layer above it.
set -euo pipefail
root=${1:?usage: check_layers.sh SOURCE_DIR}
cd "$root"
status=0
forbid() {  # forbid FOLDER LAYER...: FOLDER may not include from any LAYER
  local folder=$1
  shift
  [[ -d $folder ]] || return 0
  for layer in "$@"; do
    if grep -rn --include='*.h' --include='*.cpp' "#include \"$layer/" "$folder"; then
      echo "layering: $folder/ includes from $layer/, a layer above it" >&2
      status=1
    fi
  done
}
forbid base block formats nbd hw tools vmm cpu migration
forbid block formats nbd hw tools vmm migration
forbid formats nbd hw tools vmm migration
forbid nbd formats hw tools vmm migration
exit $status
