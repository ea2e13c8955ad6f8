// Limits: what a node can do and how requests to it should be shaped, as data.
// Front ends derive what they advertise from it (NBD's export flags and block
// sizes, virtio-blk's config space) and the BlockBackend shapes requests by it.
#pragma once

#include <cstdint>

namespace keel::block {

struct Limits {
  // Offsets and lengths must be multiples of this; 1 for byte access.
  uint32_t request_alignment = 1;
  // Requests are split into pieces no longer than this (a multiple of request_alignment).
  uint32_t max_transfer = 32u << 20;
  // Discard and zeroing act in units of these; smaller pieces may do nothing (discard) or write zeros.
  uint32_t discard_granularity = 0;
  uint32_t zero_granularity = 0;

  bool can_zero = true;         // write_zeroes is efficient (not just a buffer of zeros)
  bool can_fast_zero = false;   // write_zeroes with no_fallback can succeed
  bool can_trim = true;         // discard may free space
  bool can_fua = false;         // the node honours WriteFlags::fua itself
  // Writes acknowledged to one connection are seen by reads on any other, and a
  // flush on one makes every connection's writes durable: several front ends
  // may serve the node at once.
  bool can_multi_conn = false;
  bool is_rotational = false;
  // A freshly created node reads as zeros everywhere, so a copy into it may skip writing zeros.
  bool zero_init = false;
};

}  // namespace keel::block
