// BufferPool: a returned buffer is reused by the next request that fits, buffers
// are 4 KiB aligned, and what the pool keeps never exceeds its bound.
#include "base/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

using namespace keel;

TEST(BufferPool, ReusesAReturnedBufferForTheNextRequestThatFits) {
  BufferPool pool(1 << 20);
  std::byte* first = nullptr;
  {
    BufferPool::Buffer b = pool.take(256 * 1024);
    first = b.data();
    EXPECT_EQ(b.size(), 256u * 1024);
    b.span()[b.size() - 1] = std::byte{1};  // the whole size is usable
  }
  EXPECT_EQ(pool.kept_bytes(), 256u * 1024);
  BufferPool::Buffer again = pool.take(200 * 1024);
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(again.size(), 200u * 1024);
  EXPECT_EQ(pool.kept_bytes(), 0u);
  BufferPool::Buffer larger = pool.take(512 * 1024);
  EXPECT_NE(larger.data(), first);
}

TEST(BufferPool, BuffersAreAlignedForDirectIo) {
  BufferPool pool(1 << 20);
  for (size_t size : {0u, 1u, 4096u, 70000u}) {
    BufferPool::Buffer b = pool.take(size);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 4096, 0u) << size;
  }
}

TEST(BufferPool, KeepsNoMoreThanItsBound) {
  BufferPool pool(256 * 1024);
  {
    std::vector<BufferPool::Buffer> many;
    for (int i = 0; i < 8; i++) many.push_back(pool.take(64 * 1024));
  }
  EXPECT_EQ(pool.kept_bytes(), 256u * 1024);
}

TEST(BufferPool, AMovedBufferGoesBackOnce) {
  BufferPool pool(1 << 20);
  {
    BufferPool::Buffer a = pool.take(4096);
    BufferPool::Buffer b = std::move(a);
    BufferPool::Buffer c;
    c = std::move(b);
  }
  EXPECT_EQ(pool.kept_bytes(), 64u * 1024);
}
