// crash_writer IMAGE JOURNAL SEED MAX_BATCHES
//
// Opens a qcow2 image read-write and runs the operation stream of
// crash_ops.h (seeded by SEED) against it until MAX_BATCHES batches are done
// or the process is killed. After every flush() that returns, it appends
// "F <batches done>" to JOURNAL and fsyncs it: everything those batches wrote
// must survive any later crash. At the end it closes the image and appends
// "D <batches>". Any error ends the writer with status 2 and a message.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/sync.h"
#include "base/error.h"
#include "block/format.h"
#include "tests/crash/crash_ops.h"

namespace {

using keel::Task;
using keel::crash::Batch;
using keel::crash::Op;
using keel::crash::OpKind;

int g_journal = -1;

void journal(const std::string& line) {
  std::string l = line + "\n";
  if (write(g_journal, l.data(), l.size()) != static_cast<ssize_t>(l.size()) || fdatasync(g_journal) != 0) {
    std::perror("crash_writer: journal");
    std::exit(3);
  }
}

Task<void> run_op(keel::block::BlockNode& node, Op op) {
  switch (op.kind) {
    case OpKind::Write:
    case OpKind::Compressed: {
      std::vector<std::byte> data(op.length);
      keel::crash::fill_data(op.data_seed, reinterpret_cast<uint8_t*>(data.data()), op.length);
      if (op.kind == OpKind::Write) co_await node.write(op.offset, data, {});
      else co_await node.write_compressed(op.offset, data);
      break;
    }
    case OpKind::Zeroes: co_await node.write_zeroes(op.offset, op.length, {.may_unmap = false}); break;
    case OpKind::ZeroesUnmap: co_await node.write_zeroes(op.offset, op.length, {.may_unmap = true}); break;
    case OpKind::Discard: co_await node.discard(op.offset, op.length); break;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: crash_writer IMAGE JOURNAL SEED MAX_BATCHES\n");
    return 1;
  }
  const std::string image = argv[1];
  const uint64_t seed = std::strtoull(argv[3], nullptr, 0);
  const uint64_t max_batches = std::strtoull(argv[4], nullptr, 0);
  g_journal = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (g_journal < 0) {
    std::perror("crash_writer: open journal");
    return 1;
  }
  uint64_t done = 0;
  Op current{};
  try {
    keel::EventLoop loop;
    keel::block::OpenOptions options;
    options.format = "qcow2";
    options.writable = true;
    auto node = loop.run(keel::block::open_image(image, options));
    journal("O");
    keel::crash::OpStream stream(seed, node->size(), node->cluster_size());
    for (; done < max_batches;) {
      Batch b = stream.next();
      current = b.ops.front();
      loop.run([](keel::block::BlockNode& n, std::vector<Op> ops) -> Task<void> {
        keel::TaskGroup group;
        for (const Op& op : ops) group.spawn(run_op(n, op));
        co_await group.join();
      }(*node, b.ops));
      done++;
      if (b.flush_after) {
        loop.run(node->flush());
        journal("F " + std::to_string(done));
      }
    }
    loop.run(node->flush());
    journal("F " + std::to_string(done));
    loop.run(node->close());
    journal("D " + std::to_string(done));
  } catch (const keel::Error& e) {
    std::fprintf(stderr, "crash_writer: batch %llu (%s at %llu+%llu...): %s\n", static_cast<unsigned long long>(done),
                 keel::crash::op_name(current.kind), static_cast<unsigned long long>(current.offset),
                 static_cast<unsigned long long>(current.length), e.what());
    return 2;
  }
  return 0;
}
