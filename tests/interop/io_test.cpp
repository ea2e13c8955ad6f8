// keel-io against qemu-io: the same command lines run on identical copies of
// an image, comparing stdout (timings masked as qemu's iotests mask them),
// stderr (program name aside), the exit status, and then the images.
#include <filesystem>
#include <fstream>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

struct IoCase {
  std::string name;
  std::string format;  // "qcow2" or "raw"
  std::string create_options;
  std::vector<std::string> args;  // qemu-io's arguments; "IMG" is the image
  uint64_t size = 1 << 20;
  // Where qemu-io's order of aio completions depends on timing, reports are compared as a set.
  bool unordered = false;
};

std::ostream& operator<<(std::ostream& o, const IoCase& c) { return o << c.name; }

class IoLikeQemu : public ::testing::TestWithParam<IoCase> {};

TEST_P(IoLikeQemu, SameOutputAndImage) {
  KEEL_REQUIRE_QEMU();
  const IoCase& c = GetParam();
  TempDir t;
  const std::string qdir = t.file("q"), kdir = t.file("k");
  std::filesystem::create_directories(qdir);
  std::filesystem::create_directories(kdir);
  // Created twice rather than copied, so that raw images keep their holes.
  for (const auto& dir : {qdir, kdir}) {
    std::vector<std::string> create{"create", "-q", "-f", c.format};
    if (!c.create_options.empty()) create.insert(create.end(), {"-o", c.create_options});
    create.insert(create.end(), {dir + "/img", std::to_string(c.size)});
    ASSERT_EQ(qemu_img(create).status, 0) << join(create);
  }
  write_file(t.file("pattern.bin"), {'k', 'e', 'e', 'l', 0x01, 0xff, '-', 'i', 'o'});

  std::vector<std::string> args;
  for (const auto& a : c.args) args.push_back(replace_all(replace_all(a, "IMG", "img"), "PATTERN_FILE", t.file("pattern.bin")));
  const auto runs = run_both(qdir, kdir, args);
  expect_same(runs, "keel-io/qemu-io " + join(args), c.unordered);

  if (!std::filesystem::exists(qdir + "/img")) return;
  const auto cmp = qemu_img({"compare", "-f", c.format, "-F", c.format, qdir + "/img", kdir + "/img"});
  EXPECT_EQ(cmp.status, 0) << describe("qemu-img compare", cmp);
  EXPECT_TRUE(same_allocation(allocation_map(kdir + "/img", c.format), allocation_map(qdir + "/img", c.format)));
  if (c.format == "qcow2") {
    const auto check = qemu_img({"check", "-f", "qcow2", kdir + "/img"});
    EXPECT_EQ(check.status, 0) << describe("qemu-img check (keel's image)", check);
  }
}

std::vector<std::string> c(std::initializer_list<std::string> commands) {
  std::vector<std::string> out;
  for (const auto& x : commands) out.insert(out.end(), {"-c", x});
  return out;
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const std::vector<std::string> kQcow2{"-f", "qcow2"};
const std::vector<std::string> kRaw{"-f", "raw"};
const std::vector<std::string> kImg{"IMG"};

std::vector<IoCase> io_cases() {
  const auto read_write = c({"write -P 0xab 0 4k", "read -P 0xab 0 4k", "read -P 0xac 0 4k", "read -v 0 40", "read -C 0 4k",
                             "write -C -P 7 4k 1k", "read -q -P 7 4k 1k", "write -q 8k 512", "read -Cv 8k 20", "read -P 0xcd -s 2 -l 3 8k 8",
                             "read -P 0xcd -s 9 8k 8", "read -s 1 0 4", "read -p 0 1", "write -p 0 1", "w 1k 1k", "r -P 0xcd 1k 1k",
                             "write 3 5", "read -v 0 9", "write -f 12k 4k", "read 0 0", "read 1M 0", "write 1M 0", "length", "l"});
  const auto status = c({"write -P 1 0 64k", "write -P 2 192k 100k", "write -z 512k 64k", "alloc 0", "alloc 0 1M", "alloc 1 2",
                         "alloc 64k 128k", "alloc 1M", "alloc 2M", "alloc 0 3G", "a 190k 20k", "map", "length", "info", "i"});
  const auto numbers = c({"read 0 x", "read 0 1.5k", "read 0 0x10", "read 0 010", "read 0 1b", "read 0 1s", "read 0 1K",
                          "read 0 1e", "read 0 8E", "read 7E 1", "read 0 99999999999999999999999", "read 0 3G", "read 0 1.5",
                          "alloc 1.k", "alloc 0x10k", "alloc 0x", "alloc 0x1.5", "alloc 1.5e3k", "alloc 1e3", "alloc -0",
                          "alloc +5", "alloc 0.0005k", "alloc 0.00146484375k", "alloc 1.k5", "alloc 1kb", "alloc 00x10",
                          "alloc 0X10", "alloc 0xffffffffffffffffff", "alloc .5k", "alloc 5.", "alloc 18446744073709551615",
                          "alloc 9223372036854775807", "alloc 9223372036854775808", "alloc 7.99999999999E", "alloc 15.9999E",
                          "alloc 99999999999999999999k", "alloc 99999E", "alloc 0x1p", "alloc 0x1b", "alloc 1.5e", "alloc 0.5k",
                          "alloc \t5"});
  const auto hostile = c({"read -1 1", "read 0 9223372036854775807", "write 9223372036854775807 1", "write -z -n 0 8E",
                          "write -z -n 9E 1", "alloc 9223372036854775807 9223372036854775807", "discard 8E 1", "discard 0 -5",
                          "readv 0 2G 2G", "writev 0 1G 1G 1G", "read -s 9223372036854775807 -P 1 0 1",
                          "read -l 9223372036854775807 -P 1 0 1", "write -z -n 1M 9223372036854775807", "aio_read 8E 1",
                          "aio_write -z 0 9223372036854775807", "truncate 9223372036854775807", "aio_flush", "read -P -1 0 1",
                          "read -P 0x100 0 1", "read -P 1x 0 1", "write -s /nonexistent 0 1", "write -s / 0 1", "sleep -5",
                          "sleep x", "read", "read 0", "write 0", "readv 0", "", "   ", "help x y z"});
  const auto vectors = c({"writev -P 5 0 512 1k 4k", "readv -P 5 0 512 1k 4k", "readv -v 0 16 16", "readv -P 6 0 512",
                          "writev 0 1 2", "writev 0", "readv 0 x", "readv 0 3G", "readv 0 1G 1G 1G", "writev -C 0 512",
                          "writev -f -q 1k 1k", "readv -q -C -P 0xcd 1k 1k", "readv 1M 1", "writev 1M 1", "readv -X 0 1",
                          "writev -X 0 1"});
  const auto compressed = c({"write -c -P 1 0 64k", "write -c 0 4k", "write -c 512 64k", "write -c 100 64k", "write -c 64k 100",
                             "write -c -f 0 64k", "write -c -P 2 128k 192k", "write -c 960k 64k", "write -c 0 0", "write -c 2M 64k",
                             "write -P 3 64k 4k", "read -P 1 0 64k", "read -P 2 128k 192k", "map"});
  const auto zeroes = c({"write -P 1 0 256k", "write -z 0 64k", "write -z -u 64k 64k", "write -z 1000 10", "write -z -u 3000 10000", "write -z -f 300k 64k", "write -u 0 1", "write -z -P 1 0 1",
                         "write -z -s PATTERN_FILE 0 1", "write -P 1 -s PATTERN_FILE 0 1", "write -b -z 0 1", "write -n 0 1",
                         "read -P 0 0 192k", "read -P 1 256k 1", "write 0 3G", "write -z 0 3G"});
  // Zeroing parts of clusters: whole (sub)clusters become zero where the rest already reads as zeros.
  const auto zeroes_partial = c({"write -P 1 0 64k", "write -z 70k 4k", "write -z -n 140k 4k", "write -z -n 0 4k", "write -z -n 0 64k",
                                 "write -z -u -n 64k 64k", "write -z 200k 100", "write -c 256k 64k", "write -z 258k 2k",
                                 "write -z -n 330k 1k", "read -P 0 258k 2k", "map", "alloc 64k 64k"});
  const auto discard = c({"write -P 1 0 256k", "discard 64k 64k", "discard -C 0 1", "discard -q 0 512", "discard 0 x", "discard 0 3G",
                          "discard 2M 1", "discard 1M 0", "discard 1M 1", "d 200k 4k", "discard -X 0 1", "discard 0", "read -P 0 64k 64k",
                          "read -P 1 0 64k"});
  const auto discard_mapped = discard + c({"map", "alloc 0 256k"});
  const auto errors = c({"foo", "read 1 2 3", "read -X 0 4k", "read -P 300 0 4k", "read 0 -1", "read 1M 1", "read 1048575 2",
                         "write 1048575 2", "read 2M 0", "flush 1", "length 1", "map 1", "info 1", "close 1", "aio_flush 1", "truncate",
                         "alloc", "alloc 0 x", "read -b 1 512", "write -b 0 511", "write -f -b 0 1",
                         "read --x 0 1", "read - 0 1", "read -P", "write -s", "write 0 1 2", "read -a 0 1", "help foo",
                         "write -s PATTERN_FILE 3 100", "read -v 0 120", "flush", "f"});
  const auto sessions = c({"open IMG", "close", "length", "close", "open -o driver=qcow2 IMG", "info", "close",
                           "open -o driver=qcow2,file.filename=IMG", "length", "close", "open -o driver=qcow2", "open -r -o driver=qcow2 IMG",
                           "write 0 1", "close", "open -n -o driver=qcow2 IMG", "write -P 9 1 1", "read -P 9 1 1", "close",
                           "open -t bogus IMG", "open -X IMG", "open", "open nonexist", "open IMG IMG", "open -o driver=qcow2,foo=bar IMG",
                           "open -o file.foo=1 IMG", "open -o read-only=on IMG", "open -o force-share=on IMG", "open -U IMG",
                           "open -r -U IMG", "length", "open IMG", "c", "o -d ignore IMG", "discard 0 64k", "close",
                           "open -i threads -t writeback IMG", "write -P 4 0 4k", "close", "open -k IMG", "open -k -n IMG",
                           "read -P 4 0 4k", "close", "open -i bogus IMG", "open -d bogus IMG", "open -C IMG", "length", "quit",
                           "length"});
  const auto reopen = c({"reopen -r", "write 0 1", "reopen -w", "write -P 6 0 1", "reopen -r -w", "reopen -c none", "read -P 6 0 1",
                         "reopen -c bogus", "reopen x", "reopen -o foo=bar", "reopen -o cache.direct=on", "read 1 1", "reopen -c writeback",
                         "info"});
  const auto no_image = c({"info", "length", "map", "alloc 0", "flush", "aio_flush", "close", "reopen", "truncate 1", "discard 0 1",
                           "read 0 1", "write 0 1", "readv 0 1", "writev 0 1", "aio_read 0 1", "aio_write 0 1", "help quit", "sleep 1"});
  const auto truncate_raw = c({"truncate 2M", "length", "truncate 1000", "length", "truncate -m full 3M", "length", "truncate x",
                               "truncate -m bogus 3M", "truncate -m", "truncate -X 1", "t 1M", "map"});
  const auto truncate_qcow2 = c({"write -P 1 0 64k", "truncate 2M", "length", "truncate 2M", "truncate 8G", "length", "read -P 0 1M 64k",
                                 "write -P 2 4G 64k", "map"});
  const auto aio = c({"aio_write -P 7 0 4k", "aio_flush", "aio_write -P 8 64k 4k", "aio_write -C -P 9 128k 1k", "aio_flush",
                      "aio_read -P 7 0 4k", "aio_flush", "aio_read -P 9 0 4k", "aio_flush", "aio_read -v 128k 20", "aio_flush",
                      "aio_read -i 0 4k", "aio_write -i 0 4k", "aio_write -z -u 0 4k", "aio_flush", "aio_write -u 0 4k",
                      "aio_write -z 0 4k 4k", "aio_read 2M 1k", "aio_flush", "aio_write -q -P 1 256k 512 512", "aio_flush",
                      "aio_read -q -P 1 256k 1k", "aio_flush", "aio_write -f 512k 4k", "aio_flush", "aio_read -X 0 1",
                      "aio_write -X 0 1", "aio_read 0", "aio_write -P 300 0 1", "aio_read 0 3G", "aio_write 2M 1", "aio_flush",
                      "read -P 8 64k 4k"});
  const auto aio_together = c({"aio_write -P 1 0 4k", "aio_write -P 2 64k 4k", "aio_write -z 128k 64k", "aio_flush",
                               "aio_read -P 1 0 4k", "aio_read -P 2 64k 4k", "aio_read -P 0 128k 64k", "aio_flush"});
  const auto help = c({"help quit", "help help", "help ?", "? a", "help map", "help flush", "help aio_flush", "help length", "help info",
                       "help close", "help sleep", "help alloc", "help truncate"});
  return {
      {"read_write_qcow2", "qcow2", "", kQcow2 + read_write + kImg},
      {"read_write_raw", "raw", "", kRaw + read_write + kImg},
      {"read_write_probed_raw", "raw", "", read_write + kImg},
      {"read_write_nocache_misaligned", "qcow2", "cluster_size=4k", kQcow2 + c({"write -P 3 1 511", "read -P 3 1 511", "read -v 0 2"}) + read_write + std::vector<std::string>{"-n", "-m", "IMG"}},
      {"read_write_nocache_raw", "raw", "", kRaw + std::vector<std::string>{"-n"} + read_write + kImg},
      {"status_qcow2", "qcow2", "", kQcow2 + status + kImg},
      {"status_raw", "raw", "", kRaw + status + kImg},
      {"status_qcow2_v2", "qcow2", "compat=0.10", kQcow2 + status + kImg},
      {"status_cluster_512", "qcow2", "cluster_size=512", kQcow2 + status + kImg},
      {"status_extended_l2", "qcow2", "extended_l2=on", kQcow2 + status + c({"write -P 3 600k 2k", "map", "alloc 600k 4k"}) + kImg},
      {"status_empty_image", "qcow2", "", kQcow2 + c({"map", "length", "alloc 0", "info"}) + kImg, 0},
      {"numbers", "qcow2", "", kQcow2 + numbers + kImg},
      {"hostile", "qcow2", "", kQcow2 + hostile + kImg},
      {"vectors_qcow2", "qcow2", "", kQcow2 + vectors + kImg},
      {"vectors_raw", "raw", "", kRaw + vectors + kImg},
      {"compressed", "qcow2", "", kQcow2 + compressed + kImg},
      {"compressed_4k_unaligned_size", "qcow2", "cluster_size=4k", kQcow2 + c({"write -c 0 12k", "write -c 94208 5632", "write -c 94208 4096", "write -c 8k 6k", "map"}) + kImg, 100000},
      {"compressed_v2_zstd", "qcow2", "compat=0.10", kQcow2 + compressed + kImg},
      {"compressed_zstd", "qcow2", "compression_type=zstd", kQcow2 + compressed + kImg},
      {"compressed_raw", "raw", "", kRaw + c({"write -c 0 64k", "write -c 1 1"}) + kImg},
      {"zeroes_qcow2", "qcow2", "", kQcow2 + zeroes + c({"write -z -n 192k 64k", "write -z -u -n 128k 64k", "map"}) + kImg},
      {"zeroes_qcow2_v2", "qcow2", "compat=0.10", kQcow2 + zeroes + c({"map"}) + kImg},
      {"zeroes_extended_l2", "qcow2", "extended_l2=on,cluster_size=16k", kQcow2 + zeroes + c({"map"}) + kImg},
      {"zeroes_raw", "raw", "", kRaw + zeroes + c({"map"}) + kImg},
      {"zeroes_partial_qcow2", "qcow2", "", kQcow2 + zeroes_partial + kImg},
      {"zeroes_partial_qcow2_v2", "qcow2", "compat=0.10", kQcow2 + zeroes_partial + kImg},
      {"zeroes_partial_extended_l2", "qcow2", "extended_l2=on,cluster_size=16k", kQcow2 + zeroes_partial + kImg},
      {"zeroes_partial_cluster_4k", "qcow2", "cluster_size=4k", kQcow2 + zeroes_partial + kImg},
      {"discard_qcow2", "qcow2", "", kQcow2 + discard_mapped + kImg},
      {"discard_qcow2_v2", "qcow2", "compat=0.10", kQcow2 + discard_mapped + kImg},
      {"discard_raw", "raw", "", kRaw + discard_mapped + kImg},
      {"errors_qcow2", "qcow2", "", kQcow2 + errors + kImg},
      {"errors_raw", "raw", "", kRaw + errors + c({"read -b 0 512", "write -b 0 512"}) + kImg},
      {"read_only", "qcow2", "", kQcow2 + std::vector<std::string>{"-r"} + c({"write 0 1", "read 0 1", "truncate 4M", "discard 0 1", "writev 0 512", "aio_write 0 512", "write -X", "flush", "aio_flush", "length"}) + kImg},
      {"sessions", "qcow2", "", sessions},
      {"reopen", "qcow2", "", kQcow2 + reopen + kImg},
      {"no_image", "qcow2", "", no_image},
      {"truncate_raw", "raw", "", kRaw + truncate_raw + kImg},
      {"truncate_qcow2_grow", "qcow2", "", kQcow2 + truncate_qcow2 + kImg},
      {"aio_qcow2", "qcow2", "", kQcow2 + aio + kImg, 1 << 20, true},
      {"aio_raw_threads", "raw", "", kRaw + std::vector<std::string>{"-i", "threads"} + aio + kImg, 1 << 20, true},
      {"aio_together", "qcow2", "cluster_size=4k", kQcow2 + aio_together + kImg, 1 << 20, true},
      {"help_one_liners", "qcow2", "", help},
      {"image_opts", "qcow2", "", std::vector<std::string>{"--image-opts"} + c({"write -P 1 0 4k", "info"}) + std::vector<std::string>{"driver=qcow2,file.filename=IMG,cache.direct=on"}},
      {"image_opts_probe", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "file.filename=IMG"}},
      {"image_opts_errors", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=qcow2,file.filename=IMG,file.foo=1"}},
      {"image_opts_read_only", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=qcow2,file.filename=IMG,read-only=on"}},
      {"image_opts_no_file", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=qcow2"}},
      {"image_opts_node_ref", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=qcow2,file=IMG"}},
      {"image_opts_bad_bool", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=qcow2,file.filename=IMG,read-only=maybe"}},
      {"image_opts_unknown_driver", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=bogus,file.filename=IMG"}},
      {"image_opts_format_option", "raw", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=raw,file.filename=IMG,foo=bar"}},
      {"image_opts_escaped_comma", "qcow2", "", std::vector<std::string>{"--image-opts", "-c", "length", "driver=qcow2,file.filename=a,,b"}},
      {"image_opts_and_format", "qcow2", "", std::vector<std::string>{"--image-opts", "-f", "qcow2", "-c", "length", "driver=qcow2,file.filename=IMG"}},
      {"unknown_format", "qcow2", "", std::vector<std::string>{"-f", "foo", "-c", "length", "IMG"}},
      {"missing_image", "qcow2", "", std::vector<std::string>{"-c", "length", "nonexist"}},
      {"force_share_writable", "qcow2", "", std::vector<std::string>{"-U", "-c", "length", "IMG"}},
      {"force_share_read_only", "qcow2", "", std::vector<std::string>{"-U", "-r", "-c", "length", "IMG"}},
      {"native_aio_needs_direct", "qcow2", "", std::vector<std::string>{"-i", "native", "-c", "length", "IMG"}},
      {"native_aio_direct", "qcow2", "", std::vector<std::string>{"-k", "-n", "-c", "write -P 2 0 4k", "-c", "read -P 2 0 4k", "IMG"}},
      {"io_uring", "raw", "", std::vector<std::string>{"-i", "io_uring", "-f", "raw", "-c", "write -P 2 0 4k", "-c", "read -P 2 0 4k", "IMG"}},
      {"bad_cache", "qcow2", "", std::vector<std::string>{"-t", "bogus", "-c", "length", "IMG"}},
      {"bad_aio", "qcow2", "", std::vector<std::string>{"-i", "bogus", "-c", "length", "IMG"}},
      {"bad_discard", "qcow2", "", std::vector<std::string>{"-d", "bogus", "-c", "length", "IMG"}},
      {"discard_ignore", "qcow2", "", std::vector<std::string>{"-d", "ignore", "-f", "qcow2", "-c", "write 0 64k", "-c", "discard 0 64k", "-c", "write -z -u 0 64k", "-c", "map", "IMG"}},
      {"cache_modes", "qcow2", "", std::vector<std::string>{"-t", "unsafe", "-C", "--aio=threads", "--format=qcow2", "-c", "write -P 1 0 4k", "--cmd=read -P 1 0 4k", "IMG"}},
      {"probed_raw_guard", "raw", "", c({"write -P 0 0 512", "write -s PATTERN_FILE 0 512", "write -s PATTERN_FILE 4 4", "read -P 0 0 512"}) + kImg},
      {"quit_stops", "qcow2", "", kQcow2 + c({"foo", "quit", "length"}) + kImg},
  };
}

INSTANTIATE_TEST_SUITE_P(interop, IoLikeQemu, ::testing::ValuesIn(io_cases()), [](const auto& info) { return info.param.name; });

// Command-line errors: stderr and status as qemu-io's; stdout is the usage text, whose wording is keel's own.
TEST(IoCommandLine, ErrorsLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-X"}, {"--foo"}, {"--c", "x"}, {"--cmd"}, {"--help=x"}, {"--for=qcow2"}, {"-c"}, {"a", "b"}, {"-f"}}) {
    const auto r = run_both(t.path(), t.path(), args);
    EXPECT_EQ(r.keel.status, r.qemu.status) << join(args);
    EXPECT_EQ(r.keel.err, as_keel_io_stderr(r.qemu.err)) << join(args);
    EXPECT_NE(r.keel.out.find("Usage: keel-io [OPTIONS]... [-c STRING]... [file]"), std::string::npos) << join(args);
  }
}

// Each command's synopsis (the first line of `help CMD`) and its place in `help` are qemu-io's.
TEST(IoHelp, SynopsesLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const auto r = run_both(t.path(), t.path(), {"-c", "help"});
  ASSERT_EQ(r.keel.status, 0);
  const auto qemu_lines = split_lines(r.qemu.out);
  std::vector<std::string> expected;
  for (const auto& line : split_lines(r.keel.out)) {
    EXPECT_NE(std::find(qemu_lines.begin(), qemu_lines.end(), line), qemu_lines.end()) << "not in qemu-io's help: " << line;
    const std::string name = line.substr(0, line.find(' '));
    if (name.empty()) continue;
    const auto one = run_both(t.path(), t.path(), {"-c", "help " + name});
    EXPECT_EQ(split_lines(one.keel.out).at(0), split_lines(one.qemu.out).at(0)) << "help " << name;
  }
}

// Without -c, commands come from stdin; a pipe gets the prompt before each line, as qemu-io prints it.
TEST(IoInteractive, PipeLikeQemu) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const std::string qdir = t.file("q"), kdir = t.file("k");
  std::filesystem::create_directories(qdir);
  std::filesystem::create_directories(kdir);
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", qdir + "/img", "1M"}).status, 0);
  copy_file(qdir + "/img", kdir + "/img");
  const std::string input = "write -P 5 0 4k\nread -P 5 0 4k\nfoo\n\nlength\nhelp quit\nread -P 5 0 4k";
  const auto r = run_both(qdir, kdir, {"-f", "qcow2", "img"}, input);
  const Runs normalised{{r.qemu.status, replace_all(r.qemu.out, "qemu-io> ", "keel-io> "), r.qemu.err}, r.keel};
  expect_same(normalised, "piped commands", false);
  const auto quit = run_both(qdir, kdir, {"-f", "qcow2", "img"}, "quit\nlength\n");
  EXPECT_EQ(quit.keel.out, replace_all(quit.qemu.out, "qemu-io> ", "keel-io> "));
  const auto empty = run_both(qdir, kdir, {}, "\n   \n");
  EXPECT_EQ(empty.keel.out, replace_all(empty.qemu.out, "qemu-io> ", "keel-io> "));
  EXPECT_EQ(empty.keel.status, empty.qemu.status);
}

// On a terminal the prompt and line editing come from libedit; what the commands print is qemu-io's.
TEST(IoInteractive, TerminalRunsCommands) {
  if (!have_program("script")) GTEST_SKIP() << "script(1) not installed";
  KEEL_REQUIRE_QEMU();
  TempDir t;
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", t.file("img"), "1M"}).status, 0);
  const std::string keel = std::filesystem::absolute(keel_bin("keel-io")).string();
  const auto r = run({"script", "-qec", keel + " -f qcow2 " + t.file("img"), "/dev/null"},
                     "write -P 3 0 4k\nread -P 3 0 4k\nlength\nquit\n");
  EXPECT_EQ(r.status, 0) << describe("script keel-io", r);
  EXPECT_NE(r.out.find("keel-io> "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote 4096/4096 bytes at offset 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("read 4096/4096 bytes at offset 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 MiB"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
}

// A request overlapping an aio request in flight follows it: keel's ordering, deterministic where qemu-io's depends on timing.
TEST(IoAio, OverlappingRequestsFollowInFlightWrites) {
  TempDir t;
  ASSERT_EQ(run_keel({"keel-img", "create", "-q", "-f", "raw", t.file("img"), "1M"}).status, 0);
  for (int i = 0; i < 20; i++) {
    const auto r = run_keel({"keel-io", "-f", "raw", "-c", "aio_write -P 7 0 64k", "-c", "read -P 7 0 64k", "-c",
                             "aio_write -P 8 0 64k", "-c", "aio_read -P 8 0 64k", "-c", "aio_flush", t.file("img")});
    EXPECT_EQ(r.status, 0) << describe("keel-io", r);
    EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
  }
}

// -s (and `open -s`): writes go to a temporary overlay in $TMPDIR that is
// gone once keel-io exits; the image itself is unchanged.
TEST(IoSnapshot, WritesStayInTemporaryOverlay) {
  KEEL_REQUIRE_QEMU();
  for (const std::string format : {"qcow2", "raw"}) {
    TempDir t;
    const std::string qdir = t.file("q"), kdir = t.file("k"), tmp = t.file("tmp");
    for (const auto& dir : {qdir, kdir, tmp}) std::filesystem::create_directories(dir);
    ASSERT_EQ(qemu_img({"create", "-q", "-f", format, qdir + "/img", "1M"}).status, 0);
    qemu_io(qdir + "/img", format, {"write -P 0x17 0 200k", "write -P 0x18 512k 4k"});
    copy_file(qdir + "/img", kdir + "/img");
    copy_file(qdir + "/img", t.file("original"));
    const std::vector<std::string> commands = {"write -P 0x21 4k 4k", "read -P 0x17 0 4k", "read -P 0x21 4k 4k",
                                               "read -P 0x17 8k 56k", "write -z 512k 64k", "read -P 0 512k 64k",
                                               "discard 0 64k", "read -P 0x17 64k 4k", "alloc 0 1M", "map", "info",
                                               "close", "open -s -f " + format + " img", "read -P 0x17 4k 4k",
                                               "write -P 0x22 100k 1k", "read -P 0x22 100k 1k", "length"};
    std::vector<std::string> args{"env", "TMPDIR=" + tmp, "-C", "DIR", "PROG", "-s", "-f", format};
    for (const auto& c : commands) args.insert(args.end(), {"-c", c});
    args.push_back("img");
    auto with = [&](const std::string& dir, const std::string& prog) {
      auto a = args;
      a[3] = dir;
      a[4] = prog;
      return run(a);
    };
    const auto q = with(qdir, "qemu-io");
    const auto k = with(kdir, std::filesystem::absolute(keel_bin("keel-io")).string());
    EXPECT_EQ(k.status, q.status) << describe("keel-io -s", k) << describe("qemu-io -s", q);
    EXPECT_EQ(mask_timings(k.out), mask_timings(q.out)) << format;
    EXPECT_EQ(k.err, as_keel_io_stderr(q.err)) << format;
    const auto cmp = qemu_img({"compare", "-f", format, "-F", format, t.file("original"), kdir + "/img"});
    EXPECT_EQ(cmp.status, 0) << describe("qemu-img compare (image after keel-io -s)", cmp);
    EXPECT_TRUE(files_identical(kdir + "/img", t.file("original")));
    EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "the temporary overlay was left behind";
  }
}

// Shrinking a qcow2 image is refused by keel's engine (qemu-io shrinks it); the message is one qemu-io-style line.
TEST(IoTruncate, Qcow2ShrinkRefused) {
  TempDir t;
  ASSERT_EQ(run_keel({"keel-img", "create", "-q", "-f", "qcow2", t.file("img"), "2M"}).status, 0);
  const auto r = run_keel({"keel-io", "-f", "qcow2", "-c", "truncate 1M", "-c", "length", t.file("img")});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "2 MiB\n");
  EXPECT_EQ(r.err, "keel-io: qcow2 images cannot be shrunk yet\n");
}

// An image whose bitmaps a program without bitmap support touched (the autoclear bit is off): keel-io warns as
// qemu-io does, and the repair it names is keel-img's check, as qemu's names qemu-img's.
TEST(IoBitmaps, StaleBitmapsWarnAsQemuIo) {
  KEEL_REQUIRE_QEMU();
  TempDir t;
  const std::string image = t.file("img");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", image, "1M"}).status, 0);
  ASSERT_EQ(qemu_img({"bitmap", "--add", image, "b0"}).status, 0);
  {
    // autoclear_features (header offset 88, big-endian): bit 0 says the bitmaps are valid.
    std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(95);
    f.put(0);
  }
  const auto r = run_both(t.path(), t.path(), {"-r", "-f", "qcow2", "-c", "read 0 512", "img"});
  EXPECT_NE(r.qemu.err.find("lacking bitmap support"), std::string::npos) << r.qemu.err;
  EXPECT_EQ(r.keel.status, r.qemu.status);
  EXPECT_EQ(r.keel.err, replace_all(replace_all(r.qemu.err, "qemu-io: ", "keel-io: "), "qemu-img", "keel-img"));
}

}  // namespace
}  // namespace keel::test::interop
