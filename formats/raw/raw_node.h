// raw: the format driver that exposes its file child byte for byte.
#pragma once

#include "block/format.h"

namespace keel::raw {

const block::FormatDriver& driver();

}  // namespace keel::raw
