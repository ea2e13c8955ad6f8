#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/qcow2/compression.h"

using namespace keel;
using namespace keel::qcow2;

class Compression : public ::testing::TestWithParam<CompressionType> {};

TEST_P(Compression, RoundTripIgnoresTrailingPadding) {
  std::vector<std::byte> cluster(65536);
  for (size_t i = 0; i < cluster.size(); i++) cluster[i] = static_cast<std::byte>((i / 100) % 7);
  std::vector<std::byte> out(cluster.size() - 1);
  auto n = compress_cluster(GetParam(), cluster, out);
  ASSERT_TRUE(n.has_value());
  ASSERT_LT(*n, cluster.size() / 4);
  // What is stored is rounded up to sectors and may be followed by other data.
  std::vector<std::byte> stored(out.begin(), out.begin() + static_cast<long>(*n));
  stored.resize(*n + 700, std::byte{0x5a});
  std::vector<std::byte> back(cluster.size());
  decompress_cluster(GetParam(), stored, back);
  EXPECT_EQ(back, cluster);
}

TEST_P(Compression, IncompressibleDataDoesNotFit) {
  std::vector<std::byte> cluster(4096);
  uint64_t x = 88172645463325252ull;
  for (auto& b : cluster) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  std::vector<std::byte> out(cluster.size() - 1);
  EXPECT_FALSE(compress_cluster(GetParam(), cluster, out).has_value());
}

TEST_P(Compression, GarbageAndTruncatedInputRaise) {
  std::vector<std::byte> garbage(300, std::byte{0xff});
  std::vector<std::byte> out(65536);
  EXPECT_THROW(decompress_cluster(GetParam(), garbage, out), Error);
  std::vector<std::byte> cluster(65536, std::byte{1});
  std::vector<std::byte> compressed(65535);
  auto n = compress_cluster(GetParam(), cluster, compressed);
  ASSERT_TRUE(n.has_value());
  compressed.resize(*n / 2);
  EXPECT_THROW(decompress_cluster(GetParam(), compressed, out), Error);
  EXPECT_THROW(decompress_cluster(GetParam(), {}, out), Error);
}

INSTANTIATE_TEST_SUITE_P(Types, Compression, ::testing::Values(CompressionType::Zlib, CompressionType::Zstd));
