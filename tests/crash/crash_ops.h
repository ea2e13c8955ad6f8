// The operation stream shared by the crash writer and the crash test: both
// derive the same sequence of requests from (seed, disk size, cluster size),
// so the test can rebuild what the writer did from the writer's journal,
// which only records how many operations were complete at each flush.
//
// Operations come in batches of 1-4 that touch disjoint clusters; the writer
// runs a batch concurrently, and calls flush() after every few batches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace keel::crash {

enum class OpKind : uint8_t { Write, Zeroes, ZeroesUnmap, Discard, Compressed };

struct Op {
  OpKind kind;
  uint64_t offset;
  uint64_t length;
  uint64_t data_seed;  // Write/Compressed: the bytes come from fill_data(data_seed)
};

struct Batch {
  std::vector<Op> ops;
  bool flush_after;
};

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Data for a write: random bytes with runs of a repeated byte, so that
// whole-cluster writes compress (and some do not).
inline void fill_data(uint64_t seed, uint8_t* out, uint64_t length) {
  uint64_t state = seed;
  const bool compressible = (splitmix64(state) & 3) != 0;
  uint64_t i = 0;
  while (i < length) {
    uint64_t r = splitmix64(state);
    if (compressible && (r & 1)) {
      const uint64_t run = std::min<uint64_t>(length - i, 64 + (r >> 8) % 2048);
      std::memset(out + i, static_cast<int>((r >> 40) & 0xff), run);
      i += run;
    } else {
      const uint64_t run = std::min<uint64_t>(length - i, compressible ? 8 + (r >> 8) % 256 : 4096);
      for (uint64_t j = 0; j < run; j++) {
        if (j % 8 == 0) r = splitmix64(state);
        out[i + j] = static_cast<uint8_t>(r >> (8 * (j % 8)));
      }
      i += run;
    }
  }
}

class OpStream {
 public:
  OpStream(uint64_t seed, uint64_t disk_size, uint64_t cluster_size)
      : state_(seed * 0x2545f4914f6cdd1dull + 1), disk_(disk_size), cluster_(cluster_size) {}

  Batch next() {
    Batch b;
    const unsigned n = 1 + rnd() % 4;
    std::vector<std::pair<uint64_t, uint64_t>> used;  // cluster ranges [first, last]
    for (unsigned i = 0; i < n; i++) {
      for (int attempt = 0; attempt < 8; attempt++) {
        Op op = make_op();
        const uint64_t first = op.offset / cluster_, last = (op.offset + op.length - 1) / cluster_;
        bool overlap =
            std::any_of(used.begin(), used.end(), [&](auto& u) { return first <= u.second && u.first <= last; });
        if (overlap) continue;
        used.push_back({first, last});
        b.ops.push_back(op);
        break;
      }
    }
    b.flush_after = rnd() % 3 == 0;
    return b;
  }

 private:
  uint64_t rnd() { return splitmix64(state_); }

  uint64_t pick_offset() {
    const uint64_t r = rnd() % 4;
    const uint64_t off = rnd() % disk_;
    if (r == 0) return off - off % cluster_;
    if (r == 1) return off - off % 512;
    return off;
  }

  uint64_t pick_length(uint64_t offset) {
    uint64_t len;
    switch (rnd() % 4) {
      case 0:
        len = 1 + rnd() % 512;
        break;
      case 1:
        len = 1 + rnd() % cluster_;
        break;
      case 2:
        len = cluster_ * (1 + rnd() % 3);
        break;
      default:
        len = cluster_ + rnd() % (3 * cluster_);
        break;
    }
    return std::min(len, disk_ - offset);
  }

  Op make_op() {
    Op op{};
    const uint64_t r = rnd() % 100;
    op.data_seed = rnd();
    if (r < 20) {
      op.kind = OpKind::Compressed;
      op.offset = (rnd() % (disk_ / cluster_)) * cluster_;
      op.length = cluster_;
      return op;
    }
    op.offset = pick_offset();
    op.length = pick_length(op.offset);
    if (r < 60)
      op.kind = OpKind::Write;
    else if (r < 75)
      op.kind = OpKind::Zeroes;
    else if (r < 88)
      op.kind = OpKind::ZeroesUnmap;
    else
      op.kind = OpKind::Discard;
    return op;
  }

  uint64_t state_;
  uint64_t disk_;
  uint64_t cluster_;
};

// The bytes an operation leaves in [offset, offset+length) of the disk, and
// which part of that range it defines. Discard only drops whole clusters
// (qcow2 without a backing file then reads zeros); its partial edges are
// left alone.
inline void op_effect_range(const Op& op, uint64_t disk, uint64_t cluster, uint64_t& lo, uint64_t& hi) {
  lo = op.offset;
  hi = op.offset + op.length;
  if (op.kind == OpKind::Discard) {
    lo = (op.offset + cluster - 1) / cluster * cluster;
    hi = hi == disk ? hi : hi / cluster * cluster;
    if (hi < lo) hi = lo;
  }
}

inline const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Write:
      return "write";
    case OpKind::Zeroes:
      return "write_zeroes";
    case OpKind::ZeroesUnmap:
      return "write_zeroes(unmap)";
    case OpKind::Discard:
      return "discard";
    case OpKind::Compressed:
      return "write_compressed";
  }
  return "?";
}

}  // namespace keel::crash
