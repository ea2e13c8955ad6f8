// Making a test image through keel's own qcow2 driver.
#pragma once

#include <cstdint>
#include <string>

#include "base/async/event_loop.h"

namespace keel::test {

// Creates a qcow2 image of `size` bytes with `-o`-style `options` ("" for the defaults).
void create_qcow2(EventLoop& loop, const std::string& path, uint64_t size, const std::string& options = "");

}  // namespace keel::test
