// A per-test scratch directory, removed with everything in it at the end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Deterministic pseudo-random bytes (for reproducible test data).
std::vector<uint8_t> random_bytes(size_t size, uint64_t seed);
void write_file(const std::string& path, const std::vector<uint8_t>& data);
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace keel::test
