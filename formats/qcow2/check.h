// qcow2 consistency check and repair, with qemu-img check's semantics: count
// every reference to every cluster (header, tables, data, snapshots,
// bitmaps), compare with the stored refcounts and the COPIED flags, and with
// -r fix leaks or rebuild the refcount structures.
#pragma once

#include "base/async/task.h"
#include "block/check.h"

namespace keel::qcow2 {

class Qcow2Node;

using block::CheckFix;
using block::CheckResult;

Task<CheckResult> check_image(Qcow2Node& node, CheckFix fix);

}  // namespace keel::qcow2
