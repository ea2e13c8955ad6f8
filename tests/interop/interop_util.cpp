#include "tests/interop/interop_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace keel::test::interop {

RunResult qemu_img(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"qemu-img"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

RunResult keel_img(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"keel-img"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_keel(argv);
}

static std::string absolute(const std::string& p) { return std::filesystem::absolute(p).string(); }

RunResult qemu_img_in(const std::string& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"env", "-C", dir, "qemu-img"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

RunResult keel_img_in(const std::string& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"env", "-C", dir, absolute(keel_bin("keel-img"))};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::string join(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

std::string describe(const std::string& what, const RunResult& r) {
  std::ostringstream o;
  o << what << " -> exit " << r.status << "\n--- stdout ---\n" << r.out << "--- stderr ---\n" << r.err << "---";
  return o.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

std::string as_keel_stderr(const std::string& qemu_stderr) {
  std::string out;
  for (const auto& line : split_lines(qemu_stderr)) {
    // Messages name the tool itself: "qemu-img: ..." (once without the space:
    // "qemu-img:FILE: error" for a trace events file), "Try 'qemu-img --help'",
    // and check's refcount overflow hint.
    if (line.rfind("qemu-img:", 0) == 0) out += "keel-img:" + line.substr(9);
    else out += replace_all(replace_all(line, "'qemu-img --help'", "'keel-img --help'"),
                            "Use qemu-img amend to increase the refcount entry width or qemu-img convert",
                            "Use keel-img amend to increase the refcount entry width or keel-img convert");
    out += '\n';
  }
  return out;
}

RunResult same_as_qemu(const std::vector<std::string>& args) {
  const auto q = qemu_img(args);
  const auto k = keel_img(args);
  const std::string what = "keel-img " + join(args) + "  vs  qemu-img " + join(args);
  EXPECT_EQ(k.status, q.status) << what << "\n" << describe("keel", k) << "\n" << describe("qemu", q);
  EXPECT_EQ(k.out, q.out) << what;
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << what;
  return k;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : s) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

void qemu_io(const std::string& image, const std::string& fmt, const std::vector<std::string>& commands) {
  std::vector<std::string> argv{"qemu-io", "-f", fmt};
  for (const auto& c : commands) {
    argv.push_back("-c");
    argv.push_back(c);
  }
  argv.push_back(image);
  auto r = run(argv);
  if (r.status != 0 || !r.err.empty()) ADD_FAILURE() << describe(join(argv), r);
}

::testing::AssertionResult files_identical(const std::string& a, const std::string& b) {
  const uint64_t sa = file_size(a), sb = file_size(b);
  if (sa != sb) return ::testing::AssertionFailure() << a << " is " << sa << " bytes, " << b << " is " << sb << " bytes";
  int fa = ::open(a.c_str(), O_RDONLY | O_CLOEXEC), fb = ::open(b.c_str(), O_RDONLY | O_CLOEXEC);
  if (fa < 0 || fb < 0) {
    if (fa >= 0) ::close(fa);
    if (fb >= 0) ::close(fb);
    return ::testing::AssertionFailure() << "cannot open " << a << " or " << b;
  }
  std::vector<uint8_t> ba(1 << 20), bb(1 << 20);
  ::testing::AssertionResult result = ::testing::AssertionSuccess();
  for (uint64_t off = 0; off < sa;) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(ba.size(), sa - off));
    if (::pread(fa, ba.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len) ||
        ::pread(fb, bb.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
      result = ::testing::AssertionFailure() << "short read comparing " << a << " and " << b;
      break;
    }
    if (std::memcmp(ba.data(), bb.data(), len) != 0) {
      size_t i = 0;
      while (ba[i] == bb[i]) i++;
      result = ::testing::AssertionFailure() << a << " and " << b << " differ first at byte " << off + i << " (0x"
                                             << std::hex << int(ba[i]) << " vs 0x" << int(bb[i]) << ")";
      break;
    }
    off += len;
  }
  ::close(fa);
  ::close(fb);
  return result;
}

nlohmann::json allocation_map(const std::string& image, const std::string& fmt) {
  auto r = qemu_img({"map", "--output=json", "-f", fmt, image});
  if (r.status != 0) {
    ADD_FAILURE() << describe("qemu-img map " + image, r);
    return nullptr;
  }
  nlohmann::json merged = nlohmann::json::array();
  for (auto e : nlohmann::json::parse(r.out)) {
    e.erase("offset");
    if (!merged.empty()) {
      auto& last = merged.back();
      auto a = last, b = e;
      for (auto* x : {&a, &b}) {
        x->erase("start");
        x->erase("length");
      }
      if (a == b && last["start"].get<uint64_t>() + last["length"].get<uint64_t>() == e["start"].get<uint64_t>()) {
        last["length"] = last["length"].get<uint64_t>() + e["length"].get<uint64_t>();
        continue;
      }
    }
    merged.push_back(e);
  }
  return merged;
}

::testing::AssertionResult same_allocation(const nlohmann::json& keel, const nlohmann::json& qemu) {
  if (keel == qemu) return ::testing::AssertionSuccess();
  if (!keel.is_array() || !qemu.is_array()) return ::testing::AssertionFailure() << "no map";
  size_t i = 0;
  while (i < keel.size() && i < qemu.size() && keel[i] == qemu[i]) i++;
  auto at = [&](const nlohmann::json& m) { return i < m.size() ? m[i].dump() : std::string("(end)"); };
  return ::testing::AssertionFailure() << "allocation differs at extent " << i << " (" << keel.size() << " vs " << qemu.size()
                                       << " extents):\n  keel: " << at(keel) << "\n  qemu: " << at(qemu);
}

std::vector<uint8_t> mixed_content(size_t size, uint64_t seed) {
  std::vector<uint8_t> out(size, 0);
  const auto random = random_bytes(size, seed);
  const std::string text =
      "keel interop test data: the quick brown fox jumps over the lazy dog. 0123456789\n";
  constexpr size_t kRegion = 48 * 1024;  // deliberately not a power of two
  for (size_t start = 0, i = 0; start < size; start += kRegion, i++) {
    const size_t end = std::min(size, start + kRegion);
    switch ((i * 7 + seed) % 6) {
      case 0:  // random, incompressible
      case 3:
        std::copy(random.begin() + start, random.begin() + end, out.begin() + start);
        break;
      case 1:  // zeros
        break;
      case 2:  // compressible text
        for (size_t j = start; j < end; j++) out[j] = static_cast<uint8_t>(text[j % text.size()]);
        break;
      case 4:  // mostly zeros, a few scattered bytes (sparse detection granularity)
        for (size_t j = start + 777; j < end; j += 20000) out[j] = static_cast<uint8_t>(0x40 + (j & 0x3f));
        break;
      case 5:  // constant non-zero pattern
        std::fill(out.begin() + start, out.begin() + end, uint8_t{0xab});
        break;
    }
  }
  return out;
}

uint64_t read_be(const std::string& path, uint64_t offset, unsigned bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path);
  uint8_t buf[8] = {};
  ssize_t n = ::pread(fd, buf, bytes, static_cast<off_t>(offset));
  ::close(fd);
  if (n != static_cast<ssize_t>(bytes)) throw std::runtime_error("short read from " + path);
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes; i++) v = v << 8 | buf[i];
  return v;
}

void write_be(const std::string& path, uint64_t offset, unsigned bytes, uint64_t value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path);
  uint8_t buf[8];
  for (unsigned i = 0; i < bytes; i++) buf[i] = static_cast<uint8_t>(value >> (8 * (bytes - 1 - i)));
  ssize_t n = ::pwrite(fd, buf, bytes, static_cast<off_t>(offset));
  ::close(fd);
  if (n != static_cast<ssize_t>(bytes)) throw std::runtime_error("short write to " + path);
}

uint64_t file_size(const std::string& path) { return std::filesystem::file_size(path); }

void copy_file(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

Qcow2Layout Qcow2Layout::read(const std::string& path) {
  Qcow2Layout l{};
  if (read_be(path, 0, 4) != 0x514649fb) throw std::runtime_error(path + " is not qcow2");
  l.version = static_cast<uint32_t>(read_be(path, 4, 4));
  l.cluster_bits = static_cast<uint32_t>(read_be(path, 20, 4));
  l.cluster_size = uint64_t{1} << l.cluster_bits;
  l.l1_size = static_cast<uint32_t>(read_be(path, 36, 4));
  l.l1_table_offset = read_be(path, 40, 8);
  l.refcount_table_offset = read_be(path, 48, 8);
  l.refcount_order = l.version >= 3 ? static_cast<uint32_t>(read_be(path, 96, 4)) : 4;
  l.l2_entry_size = l.version >= 3 && (read_be(path, 72, 8) & (1u << 4)) ? 16 : 8;
  return l;
}

uint64_t Qcow2Layout::refblock_for(const std::string& path, uint64_t cluster) const {
  const uint64_t entries_per_block = cluster_size * 8 >> refcount_order;
  const uint64_t index = cluster / entries_per_block;
  return read_be(path, refcount_table_offset + index * 8, 8) & ~uint64_t{511};
}

uint64_t Qcow2Layout::get_refcount(const std::string& path, uint64_t cluster) const {
  const uint64_t block = refblock_for(path, cluster);
  if (!block) return 0;
  const uint64_t entries_per_block = cluster_size * 8 >> refcount_order;
  const uint64_t i = cluster % entries_per_block;
  const unsigned bits = 1u << refcount_order;
  if (bits >= 8) return read_be(path, block + i * bits / 8, bits / 8);
  const uint64_t byte = read_be(path, block + i * bits / 8, 1);
  return byte >> (i * bits % 8) & ((1u << bits) - 1);
}

void Qcow2Layout::set_refcount(const std::string& path, uint64_t cluster, uint64_t value) const {
  const uint64_t block = refblock_for(path, cluster);
  if (!block) throw std::runtime_error("no refcount block for cluster");
  const uint64_t entries_per_block = cluster_size * 8 >> refcount_order;
  const uint64_t i = cluster % entries_per_block;
  const unsigned bits = 1u << refcount_order;
  if (bits >= 8) return write_be(path, block + i * bits / 8, bits / 8, value);
  uint64_t byte = read_be(path, block + i * bits / 8, 1);
  const unsigned shift = i * bits % 8;
  byte = (byte & ~(((1u << bits) - 1) << shift)) | (value << shift);
  write_be(path, block + i * bits / 8, 1, byte);
}

uint64_t Qcow2Layout::l2_entry_offset(const std::string& path, uint64_t guest) const {
  const uint64_t l2_entries = cluster_size / l2_entry_size;
  const uint64_t l1_index = guest / (l2_entries * cluster_size);
  const uint64_t l2 = read_be(path, l1_table_offset + l1_index * 8, 8) & 0x00fffffffffffe00ull;
  return l2 ? l2 + (guest / cluster_size % l2_entries) * l2_entry_size : 0;
}

uint64_t Qcow2Layout::data_cluster_for(const std::string& path, uint64_t guest) const {
  const uint64_t at = l2_entry_offset(path, guest);
  if (!at) return 0;
  const uint64_t entry = read_be(path, at, 8);
  if (entry & (1ull << 62)) return 0;  // compressed
  return entry & 0x00fffffffffffe00ull;
}

std::string mask_timings(const std::string& out) {
  static const std::regex stats(R"([0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec\))");
  static const std::regex machine(R"(^([0-9]+,[0-9]+,)[0-9:.]+,[-0-9.infa]+,[-0-9.infa]+$)", std::regex::multiline);
  std::string s = std::regex_replace(out, stats, "X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)");
  return std::regex_replace(s, machine, "$1T,R,R");
}

std::string as_keel_io_stderr(const std::string& qemu_stderr) {
  std::string out;
  for (const auto& line : split_lines(qemu_stderr))
    out += (line.rfind("qemu-io: ", 0) == 0 ? "keel-io: " + line.substr(9) : line) + "\n";
  return out;
}

std::vector<std::string> report_set(const std::string& out) {
  std::vector<std::string> records;
  std::string current;
  for (const auto& line : split_lines(out)) {
    current += line + "\n";
    if (line.find("ops; XX") != std::string::npos || line.find(",T,R,R") != std::string::npos) {
      records.push_back(current);
      current.clear();
    }
  }
  if (!current.empty()) records.push_back(current);
  std::sort(records.begin(), records.end());
  return records;
}

Runs run_both(const std::string& qdir, const std::string& kdir, const std::vector<std::string>& args,
              const std::string& input) {
  std::vector<std::string> q{"env", "-C", qdir, "qemu-io"}, k{"env", "-C", kdir, std::filesystem::absolute(keel_bin("keel-io")).string()};
  q.insert(q.end(), args.begin(), args.end());
  k.insert(k.end(), args.begin(), args.end());
  return {run(q, input), run(k, input)};
}

void expect_same(const Runs& r, const std::string& what, bool unordered) {
  const std::string q = mask_timings(r.qemu.out), k = mask_timings(r.keel.out);
  EXPECT_EQ(r.keel.status, r.qemu.status) << what << "\n" << describe("keel", r.keel) << "\n" << describe("qemu", r.qemu);
  if (unordered) EXPECT_EQ(report_set(k), report_set(q)) << what << "\n--- keel ---\n" << k << "--- qemu ---\n" << q;
  else EXPECT_EQ(k, q) << what;
  EXPECT_EQ(r.keel.err, as_keel_io_stderr(r.qemu.err)) << what;
}

}  // namespace keel::test::interop
