#include <gtest/gtest.h>

#include <vector>

#include "formats/qcow2/refcounts.h"

using namespace keel::qcow2;

TEST(RefcountEntry, EveryWidthStoresIndependentEntries) {
  for (uint32_t order = 0; order <= 6; order++) {
    const uint64_t bits = 1u << order;
    const uint64_t max = order == 6 ? UINT64_MAX : (1ull << bits) - 1;
    std::vector<std::byte> block(512);
    const uint64_t entries = 512 * 8 / bits;
    for (uint64_t i = 0; i < entries; i++) set_refcount_entry(block.data(), i, order, (i * 7 + 3) & max);
    for (uint64_t i = 0; i < entries; i++) ASSERT_EQ(get_refcount_entry(block.data(), i, order), (i * 7 + 3) & max) << "order " << order;
    set_refcount_entry(block.data(), 5, order, max);
    EXPECT_EQ(get_refcount_entry(block.data(), 5, order), max);
    EXPECT_EQ(get_refcount_entry(block.data(), 4, order), (4 * 7 + 3) & max);
    EXPECT_EQ(get_refcount_entry(block.data(), 6, order), (6 * 7 + 3) & max);
  }
}

TEST(RefcountEntry, SubByteWidthsPackLeastSignificantBitsFirst) {
  std::vector<std::byte> block(4);
  set_refcount_entry(block.data(), 0, 0, 1);  // 1-bit entries
  set_refcount_entry(block.data(), 3, 0, 1);
  EXPECT_EQ(block[0], std::byte{0x09});
  set_refcount_entry(block.data(), 1, 2, 0xa);  // 4-bit entries: entry 1 is the high nibble
  EXPECT_EQ(block[0], std::byte{0xa9});
}
