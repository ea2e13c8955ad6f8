// Registration of the qcow2 format driver: probing, opening, creation options.
#pragma once

#include "block/format.h"

namespace keel::qcow2 {

const block::FormatDriver& driver();

}  // namespace keel::qcow2
