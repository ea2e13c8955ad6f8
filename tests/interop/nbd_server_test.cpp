// keel-nbd against qemu-nbd: the same image served by each, with the same
// options, must look the same to real NBD clients (nbdinfo's export fields
// and maps, nbdsh's request-level answers), and every client of libnbd and
// qemu (nbdcopy, nbdinfo, qemu-img, qemu-io) must read and write through it.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "base/endian.h"
#include "formats/qcow2/header.h"
#include "tests/interop/interop_util.h"

namespace keel::test::interop {

namespace {

bool connectable(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A server (keel-nbd or qemu-nbd, persistent) on a Unix socket for the lifetime of the object.
class Served {
 public:
  Served(const std::string& program, const std::string& socket, std::vector<std::string> args)
      : socket_(socket), process_(command(program, socket, std::move(args))) {
    for (int i = 0; i < 500 && !process_.exited(); i++) {
      if (std::filesystem::exists(socket) && connectable(socket)) {
        ready_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  bool ready() const { return ready_; }
  std::string uri(const std::string& name = "") const { return "nbd+unix:///" + name + "?socket=" + socket_; }

 private:
  static std::vector<std::string> command(const std::string& program, const std::string& socket,
                                          std::vector<std::string> args) {
    std::vector<std::string> argv{program == "keel-nbd" ? keel_bin("keel-nbd") : program, "-t", "-k", socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::string socket_;
  BackgroundProcess process_;
  bool ready_ = false;
};

// nbdinfo --json without the fields that name the server's socket.
nlohmann::json export_fields(const std::string& uri, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{"nbdinfo", "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(uri);
  const RunResult r = run(argv);
  EXPECT_EQ(r.status, 0) << describe(join(argv), r);
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.contains("exports"))
    for (auto& e : j["exports"]) e.erase("uri");
  return j;
}

std::string map_of(const std::string& uri, const std::string& context) {
  const std::vector<std::string> argv{"nbdinfo", "--map=" + context, uri};
  const RunResult r = run(argv);
  EXPECT_EQ(r.status, 0) << describe(join(argv), r);
  return r.out;
}

// The bytes of a file, and a big-endian field written into one (to damage an image on purpose).
std::vector<std::byte> file_bytes(const std::string& path, uint64_t offset, size_t length) {
  std::vector<std::byte> bytes(length);
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(length));
  return bytes;
}

template <typename T>
void patch_be(const std::string& path, uint64_t offset, T value) {
  std::byte field[sizeof(T)];
  store_be<T>(field, value);
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(reinterpret_cast<const char*>(field), sizeof field);
}

qcow2::Header header_of(const std::string& image) { return qcow2::parse_header(file_bytes(image, 0, 65536)); }

// Runs keel-nbd and qemu-nbd with `args` (each fails before serving) and expects the same status and stderr.
void expect_same_failure(const std::vector<std::string>& args) {
  // A server that does start is stopped by timeout, which shows as a status of 124.
  std::vector<std::string> qemu{"timeout", "10", "qemu-nbd"}, keel{"timeout", "10", keel_bin("keel-nbd")};
  qemu.insert(qemu.end(), args.begin(), args.end());
  keel.insert(keel.end(), args.begin(), args.end());
  const RunResult q = run(qemu), k = run(keel);
  EXPECT_NE(q.status, 0) << describe(join(qemu), q);
  EXPECT_EQ(k.status, q.status) << join(args);
  EXPECT_EQ(k.err, replace_all(q.err, "qemu-nbd", "keel-nbd")) << join(args);
}

// Both servers started with `args`: the same nbdinfo fields (also --list) and the same map of each context.
void expect_same_exports(const TempDir& t, const std::vector<std::string>& qargs,
                         const std::vector<std::string>& kargs) {
  Served qemu("qemu-nbd", t.file("q.sock"), qargs);
  Served keel("keel-nbd", t.file("k.sock"), kargs);
  ASSERT_TRUE(qemu.ready()) << join(qargs);
  ASSERT_TRUE(keel.ready()) << join(kargs);
  const nlohmann::json fields = export_fields(qemu.uri());
  EXPECT_EQ(export_fields(keel.uri()), fields) << join(kargs);
  EXPECT_EQ(export_fields(keel.uri(), {"--list"}), export_fields(qemu.uri(), {"--list"})) << join(kargs);
  ASSERT_TRUE(fields.contains("exports") && !fields["exports"].empty());
  for (const std::string context : fields["exports"][0]["contexts"])
    EXPECT_EQ(map_of(keel.uri(), context), map_of(qemu.uri(), context)) << join(kargs) << " " << context;
}

// An nbdsh script (in --opt-mode) prints the same against qemu-nbd and keel-nbd, each served with args(program).
void expect_same_nbdsh_output(const TempDir& t, const std::function<std::vector<std::string>(const std::string&)>& args,
                              const std::string& script) {
  std::map<std::string, std::string> outputs;
  for (const std::string program : {"qemu-nbd", "keel-nbd"}) {
    Served server(program, t.file(program + ".sock"), args(program));
    ASSERT_TRUE(server.ready());
    // nbdsh runs `python3`: Debian's, where the nbd module is, not one earlier in PATH.
    const RunResult r = run({"env", "PATH=/usr/bin:/bin", "nbdsh", "--opt-mode", "-u", server.uri(), "-c", script});
    EXPECT_EQ(r.status, 0) << program << ": " << r.err;
    outputs[program] = r.out;
  }
  EXPECT_EQ(outputs["keel-nbd"], outputs["qemu-nbd"]);
}

void expect_same_images(const std::string& a, const std::string& b) {
  const RunResult r = qemu_img({"compare", a, b});
  EXPECT_EQ(r.status, 0) << describe("qemu-img compare " + a + " " + b, r);
}

// A chain with every kind of extent: data, zeros (allocated and not), discarded clusters, backing data.
struct Images {
  TempDir t;
  std::string base = t.file("base.qcow2"), overlay = t.file("overlay.qcow2"), raw = t.file("sparse.raw");
  Images() {
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", base, "16M"}).status, 0);
    qemu_io(base, "qcow2", {"write -P 0x11 0 1M", "write -P 0x12 4M 512k", "write -z 6M 1M"});
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay}).status, 0);
    qemu_io(overlay, "qcow2", {"write -P 0x21 512k 1M", "write -z 4M 64k", "discard 8M 1M", "write -P 0x22 15M 1M"});
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "raw", raw, "8M"}).status, 0);
    qemu_io(raw, "raw", {"write -P 0x31 1M 1M", "write -P 0x32 5M 4k"});
  }
  // A private copy of `image` (and so of what a server may write), for one of the two servers.
  std::string copy(const std::string& image, const std::string& as) const {
    const std::string to = t.file(as);
    std::filesystem::copy_file(image, to, std::filesystem::copy_options::overwrite_existing);
    return to;
  }
};

struct ServeCase {
  std::string name;
  std::vector<std::string> options;
};

std::ostream& operator<<(std::ostream& os, const ServeCase& c) { return os << c.name; }

class NbdServeAsQemu : public ::testing::TestWithParam<ServeCase> {};

}  // namespace

// Every export field nbdinfo shows (size, flags, block sizes, contexts, name, description), for qcow2 over a
// backing file and for raw, and the map of every context.
TEST_P(NbdServeAsQemu, ExportFieldsAndMapsMatchQemuNbd) {
  if (!have_program("nbdinfo") || !have_program("qemu-nbd")) GTEST_SKIP() << "nbdinfo or qemu-nbd missing";
  Images images;
  for (const auto& [image, format] : {std::pair{images.overlay, "qcow2"}, std::pair{images.raw, "raw"}}) {
    std::vector<std::string> args = GetParam().options;
    args.insert(args.end(), {"-f", format});
    std::vector<std::string> qargs = args, kargs = args;
    qargs.push_back(image);
    kargs.push_back(image);
    const bool read_only = std::find(args.begin(), args.end(), "-r") != args.end();
    // A writable export locks the image: each server gets its own copy (the backing file is shared read-only).
    if (!read_only) {
      qargs.back() = images.copy(image, std::string("q.") + format);
      kargs.back() = images.copy(image, std::string("k.") + format);
    }
    Served qemu("qemu-nbd", images.t.file("q.sock"), qargs);
    Served keel("keel-nbd", images.t.file("k.sock"), kargs);
    ASSERT_TRUE(qemu.ready());
    ASSERT_TRUE(keel.ready());
    const bool named = std::find(args.begin(), args.end(), "-x") != args.end();
    const std::string name = named ? "foo" : "";
    const nlohmann::json fields = export_fields(qemu.uri(name));
    EXPECT_EQ(export_fields(keel.uri(name)), fields) << format;
    EXPECT_EQ(export_fields(keel.uri(name), {"--list"}), export_fields(qemu.uri(name), {"--list"})) << format;
    ASSERT_TRUE(fields.contains("exports") && !fields["exports"].empty());
    for (const std::string context : fields["exports"][0]["contexts"])
      EXPECT_EQ(map_of(keel.uri(name), context), map_of(qemu.uri(name), context)) << format << " " << context;
  }
}

INSTANTIATE_TEST_SUITE_P(Options, NbdServeAsQemu,
                         ::testing::Values(ServeCase{"plain", {}}, ServeCase{"read_only", {"-r"}},
                                           ServeCase{"shared", {"-e", "3"}},
                                           ServeCase{"named", {"-A", "-x", "foo", "-D", "a description"}},
                                           ServeCase{"snapshot", {"-s", "-A"}}),
                         [](const auto& info) { return info.param.name; });

// qemu's own NBD client writes through keel-nbd as qemu-io writes the image directly, and qemu-img reads it back.
TEST(NbdServe, QemuIoWritesThroughKeelNbdAsOnTheImage) {
  Images images;
  const std::string served = images.copy(images.overlay, "served.qcow2");
  const std::string direct = images.copy(images.overlay, "direct.qcow2");
  const std::vector<std::string> writes = {"write -P 0x41 0 64k",       "write -P 0x42 1000 3000",
                                           "write -z 2M 1M",             "write -z -u 6M 512k",
                                           "discard 8M 64k",             "write -P 0x43 -f 12M 300k",
                                           "flush",                      "write -P 0x44 16773120 4096"};
  {
    Served keel("keel-nbd", images.t.file("k.sock"), {"-f", "qcow2", served});
    ASSERT_TRUE(keel.ready());
    qemu_io(keel.uri(), "raw", writes);
    // Reads through the server see what was written.
    const RunResult r = run({"qemu-io", "-f", "raw", "-c", "read -P 0x42 1000 3000", "-c", "read -P 0 2M 1M",
                             keel.uri()});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
    const RunResult copy = qemu_img({"convert", "-f", "raw", "-O", "raw", keel.uri(), images.t.file("copy.raw")});
    EXPECT_EQ(copy.status, 0) << describe("qemu-img convert from keel-nbd", copy);
  }
  qemu_io(direct, "qcow2", writes);
  expect_same_images(served, direct);
  expect_same_images(images.t.file("copy.raw"), direct);
  const RunResult check = qemu_img({"check", served});
  EXPECT_EQ(check.status, 0) << describe("qemu-img check <served image>", check);
}

// --detect-zeroes: writes of zeros through the server become zero clusters (and with unmap, deallocated ones)
// exactly where they do through qemu-nbd with the same options: the two images map the same.
TEST(NbdServe, DetectZeroesAllocatesAsQemuNbd) {
  if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd missing";
  Images images;
  const std::vector<std::string> writes = {"write -P 0x41 0 192k", "write -P 0 64k 64k", "write -P 0 1M 256k",
                                           "write -P 0 2M 1000", "write -P 0x42 3M 64k"};
  const std::vector<std::vector<std::string>> modes = {
      {"--detect-zeroes=on"}, {"--discard=unmap", "--detect-zeroes=unmap"}, {"--detect-zeroes=off"}};
  for (const auto& mode : modes) {
    SCOPED_TRACE(join(mode));
    std::map<std::string, std::string> maps;
    for (const std::string program : {"keel-nbd", "qemu-nbd"}) {
      const std::string image = images.copy(images.base, program + ".qcow2");
      std::vector<std::string> args = mode;
      args.insert(args.end(), {"-f", "qcow2", image});
      {
        Served server(program, images.t.file(program + ".sock"), args);
        ASSERT_TRUE(server.ready());
        qemu_io(server.uri(), "raw", writes);
      }
      const RunResult map = qemu_img({"map", "--output=json", image});
      EXPECT_EQ(map.status, 0) << describe("qemu-img map", map);
      maps[program] = map.out;
    }
    EXPECT_EQ(maps["keel-nbd"], maps["qemu-nbd"]);
  }
}

// nbdcopy in both directions, over one connection and over several (multi-conn, -e 4): several connections
// writing one qcow2 at once leave it consistent.
TEST(NbdServe, NbdcopyBothWaysWithAndWithoutMultiConn) {
  if (!have_program("nbdcopy")) GTEST_SKIP() << "nbdcopy missing";
  Images images;
  const std::string source = images.t.file("source.raw");
  qemu_io(images.copy(images.raw, "source.raw"), "raw", {"write -P 0x55 3M 2M", "write -P 0x56 7M 1M"});
  for (const std::string shared : {"1", "4"}) {
    SCOPED_TRACE("-e " + shared);
    const std::string target = images.t.file("target" + shared + ".qcow2");
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", target, "8M"}).status, 0);
    {
      // Four connections spread over three connection threads, each request hopping to the image's loop.
      const std::string threads = shared == "1" ? "0" : "3";
      Served keel("keel-nbd", images.t.file("k.sock"), {"-e", shared, "--threads", threads, "-f", "qcow2", target});
      ASSERT_TRUE(keel.ready());
      const RunResult in = run({"nbdcopy", "--connections=" + shared, source, keel.uri()});
      EXPECT_EQ(in.status, 0) << describe("nbdcopy into keel-nbd", in);
      const std::string back = images.t.file("back" + shared + ".raw");
      const RunResult out = run({"nbdcopy", "--connections=" + shared, keel.uri(), back});
      EXPECT_EQ(out.status, 0) << describe("nbdcopy out of keel-nbd", out);
      expect_same_images(back, source);
    }
    expect_same_images(target, source);
    const RunResult check = qemu_img({"check", target});
    EXPECT_EQ(check.status, 0) << describe("qemu-img check after nbdcopy", check);
  }
}

// Request-level answers through libnbd's Python binding: the same script against both servers prints the same.
TEST(NbdServe, NbdshRequestsAnswerAsQemuNbd) {
  if (!have_program("nbdsh")) GTEST_SKIP() << "nbdsh missing";
  const std::string script = R"(
import errno
def attempt(what, f):
    try:
        r = f()
        print(what, "ok", r if r is not None else "")
    except nbd.Error as e:
        print(what, "error", e.errno)
size = h.get_size()
print("size", size, "flags", h.can_flush(), h.can_fua(), h.can_trim(), h.can_zero(), h.can_fast_zero(), h.can_cache())
attempt("read", lambda: h.pread(4096, 512 * 1024)[:8].hex())
attempt("read-df", lambda: len(h.pread(65536, 0, nbd.CMD_FLAG_DF)))
attempt("read-at-end", lambda: len(h.pread(4096, size - 4096)))
attempt("write-fua", lambda: h.pwrite(b"\x5a" * 4096, 8192, nbd.CMD_FLAG_FUA))
attempt("read-back", lambda: h.pread(4096, 8192)[:4].hex())
attempt("zero", lambda: h.zero(65536, 1 << 20))
attempt("zero-no-hole", lambda: h.zero(65536, 2 << 20, nbd.CMD_FLAG_NO_HOLE))
attempt("zero-fast", lambda: h.zero(65536, 3 << 20, nbd.CMD_FLAG_FAST_ZERO))
attempt("trim", lambda: h.trim(65536, 4 << 20))
attempt("trim-fua", lambda: h.trim(65536, 5 << 20, nbd.CMD_FLAG_FUA))
attempt("cache", lambda: h.cache(65536, 0))
attempt("flush", lambda: h.flush())
extents = []
def collect(metacontext, offset, entries, err):
    extents.append((metacontext, offset, list(entries)))
attempt("status", lambda: h.block_status(size, 0, collect))
attempt("status-one", lambda: h.block_status(size, 0, collect, nbd.CMD_FLAG_REQ_ONE))
print(extents)
attempt("zero-length-read", lambda: len(h.pread(0, 0)))
)";
  Images images;
  expect_same_nbdsh_output(
      images.t,
      [&](const std::string& program) {
        return std::vector<std::string>{"-A", "-f", "qcow2", images.copy(images.overlay, program + ".qcow2")};
      },
      "h.add_meta_context('base:allocation')\n"
      "h.add_meta_context('qemu:allocation-depth')\n"
      "h.opt_go()\n" +
          script);
}

// Command lines that fail before serving: the same message (program name aside) and status as qemu-nbd.
TEST(NbdServe, BadCommandLinesFailAsQemuNbd) {
  if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd missing";
  TempDir t;
  const std::string raw = t.file("disk.raw");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", raw, "1M"}).status, 0);
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"-x"},
      {"--bogus", raw},
      {t.file("missing.qcow2")},
      {"-e", "abc", raw},
      {"--cache=bad", raw},
      {"--detect-zeroes=bogus", raw},
      {"--detect-zeroes=unmap", raw},
      {"--detect-zeroes=unmap", "--discard=unmap", raw},
      {raw, raw},
      {"-f", "nosuch", raw},
      {"-f", "qcow2", raw},
      {"-L", raw},
      {"-L", "-x", "name"},
      {"-L", "--fork"},
      {"-L", "-k", t.file("no-such.sock")},
      {"-L", "-b", "127.0.0.1", "-p", "1"},
  };
  for (const auto& args : cases) {
    std::vector<std::string> qemu{"qemu-nbd"}, keel{keel_bin("keel-nbd")};
    qemu.insert(qemu.end(), args.begin(), args.end());
    keel.insert(keel.end(), args.begin(), args.end());
    const RunResult q = run(qemu), k = run(keel);
    EXPECT_EQ(k.status, q.status) << join(args);
    EXPECT_EQ(k.err, replace_all(q.err, "qemu-nbd", "keel-nbd")) << join(args);
    EXPECT_EQ(k.out, q.out) << join(args);
  }
}

// --threads is keel-nbd's own: a count, or one clear line.
TEST(NbdServe, ThreadsTakesACount) {
  TempDir t;
  const std::string raw = t.file("disk.raw");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", raw, "1M"}).status, 0);
  for (const std::string bad : {"x", "-1", ""}) {
    const RunResult r = run({keel_bin("keel-nbd"), "--threads", bad, raw});
    EXPECT_EQ(r.status, 1) << bad;
    EXPECT_EQ(r.err, "keel-nbd: Invalid thread count '" + bad + "'\n") << bad;
  }
}

// keel-nbd -L prints what qemu-nbd -L prints, for each kind of server: qemu-nbd, keel-nbd itself and nbdkit.
TEST(NbdServe, ListModeAsQemuNbd) {
  if (!have_program("qemu-nbd") || !have_program("nbdkit")) GTEST_SKIP() << "qemu-nbd or nbdkit missing";
  Images images;
  Served qemu("qemu-nbd", images.t.file("q.sock"), {"-r", "-x", "foo", "-D", "some text", "-A", images.overlay});
  Served keel("keel-nbd", images.t.file("k.sock"), {"-r", "-e", "2", "-f", "raw", images.raw});
  BackgroundProcess nbdkit({"nbdkit", "-f", "-U", images.t.file("m.sock"), "memory", "1M"});
  ASSERT_TRUE(qemu.ready());
  ASSERT_TRUE(keel.ready());
  for (int i = 0; i < 500 && !connectable(images.t.file("m.sock")); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (const std::string socket : {"q.sock", "k.sock", "m.sock"}) {
    const RunResult q = run({"qemu-nbd", "-L", "-k", images.t.file(socket)});
    const RunResult k = run({keel_bin("keel-nbd"), "-L", "-k", images.t.file(socket)});
    EXPECT_EQ(q.status, 0) << describe("qemu-nbd -L", q);
    EXPECT_EQ(k.status, q.status) << socket;
    EXPECT_EQ(k.out, q.out) << socket;
    EXPECT_EQ(k.err, q.err) << socket;
  }
}

namespace {

// Two snapshots with different data, taken at different sizes, and the image grown after them; 512-byte
// clusters so that the first snapshot's L1 table is shorter than the active one.
struct SnapshotImage {
  TempDir t;
  std::string image = t.file("snap.qcow2");
  SnapshotImage() {
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", "-o", "cluster_size=512", image, "1M"}).status, 0);
    qemu_io(image, "qcow2", {"write -P 0x11 0 64k", "write -P 0x12 300k 4k"});
    EXPECT_EQ(qemu_img({"snapshot", "-c", "snap1", image}).status, 0);
    EXPECT_EQ(qemu_img({"resize", "-q", image, "4M"}).status, 0);
    qemu_io(image, "qcow2", {"write -P 0x21 32k 64k", "write -z 300k 4k", "write -P 0x22 3M 100k"});
    EXPECT_EQ(qemu_img({"snapshot", "-c", "snap2", image}).status, 0);
    qemu_io(image, "qcow2", {"write -P 0x31 0 1M", "discard 3M 64k"});
  }
};

// Bitmaps of several granularities (one disabled, one added after some writes so it only sees later ones), with
// data, zeroed and discarded ranges, so that dirty runs cover holes too.
struct BitmapImage {
  TempDir t;
  std::string image = t.file("bitmaps.qcow2");
  BitmapImage() {
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", image, "16M"}).status, 0);
    qemu_io(image, "qcow2", {"write -P 0x11 0 2M"});
    for (const std::vector<std::string> options :
         {std::vector<std::string>{}, {"-g", "4096"}, {"-g", "512"}, {"--disable", "-g", "1M"}}) {
      std::vector<std::string> args{"bitmap", "--add"};
      args.insert(args.end(), options.begin(), options.end());
      args.insert(args.end(), {image, options.empty() ? "b0" : options.back() == "1M" ? "bdis" : "b" + options.back()});
      EXPECT_EQ(qemu_img(args).status, 0) << join(args);
    }
    qemu_io(image, "qcow2",
            {"write -P 1 100k 8k", "write 3M 1M", "write -z 8M 64k", "discard 1M 512k", "write -P 2 16711680 64k",
             "write 12345 1"});
    EXPECT_EQ(qemu_img({"bitmap", "--add", "-g", "8192", image, "blate"}).status, 0);
    qemu_io(image, "qcow2", {"write -z 5M 3M", "write -P 3 10M 64k"});
  }
};

// The fields of the first directory entry's bitmap ("b0"): where its table offset and the rest are.
struct FirstBitmap {
  uint64_t entry;  // file offset of the directory entry
  uint64_t table_offset;
};

FirstBitmap first_bitmap(const std::string& image) {
  const qcow2::Header h = header_of(image);
  const auto ext = h.bitmaps();
  EXPECT_TRUE(ext.has_value());
  const std::vector<std::byte> entry = file_bytes(image, ext->directory_offset, 24);
  return {ext->directory_offset, load_be<uint64_t>(entry.data())};
}

}  // namespace

// -l in each of qemu's spellings: the same export (read-only, the image's current size) and map as qemu-nbd,
// and the data of `qemu-img convert -l`.
TEST(NbdServe, LoadSnapshotServesAsQemuNbd) {
  if (!have_program("nbdinfo") || !have_program("qemu-nbd") || !have_program("nbdcopy"))
    GTEST_SKIP() << "nbdinfo, nbdcopy or qemu-nbd missing";
  SnapshotImage s;
  for (const std::string ref : {"snap1", "1", "2", "snapshot.id=2", "snapshot.name=snap1",
                                "snapshot.id=1,snapshot.name=snap1", "snapshot.id=2,snapshot.id=1"}) {
    SCOPED_TRACE(ref);
    expect_same_exports(s.t, {"-l", ref, "-f", "qcow2", s.image}, {"-l", ref, "-f", "qcow2", s.image});
    const std::string expected = s.t.file("expected.raw"), served = s.t.file("served.raw");
    const RunResult c = qemu_img({"convert", "-l", ref, "-O", "raw", s.image, expected});
    ASSERT_EQ(c.status, 0) << describe("qemu-img convert -l", c);
    Served keel("keel-nbd", s.t.file("k.sock"), {"-l", ref, s.image});
    ASSERT_TRUE(keel.ready());
    const RunResult copy = run({"nbdcopy", keel.uri(), served});
    ASSERT_EQ(copy.status, 0) << describe("nbdcopy", copy);
    // qemu-img convert -l writes the snapshot at its own size; the export has the image's, zeros past it.
    ASSERT_EQ(qemu_img({"resize", "-q", "-f", "raw", expected, "4M"}).status, 0);
    expect_same_images(served, expected);
  }
}

// -B for each granularity, several at once (offered last first), with -A and -r; and a writable export,
// where a client's writes mark the enabled bitmap dirty and leave a disabled one alone.
TEST(NbdServe, DirtyBitmapsServeAsQemuNbd) {
  if (!have_program("nbdinfo") || !have_program("qemu-nbd")) GTEST_SKIP() << "nbdinfo or qemu-nbd missing";
  BitmapImage b;
  for (const std::vector<std::string> options : {std::vector<std::string>{"-r", "-B", "b0"},
                                                 {"-r", "-B", "b4096", "-B", "b512", "-A"},
                                                 {"-r", "-B", "bdis", "-B", "blate", "-B", "bdis"},
                                                 {"-r", "-s", "-B", "b4096"},
                                                 {"-r", "-l", "1", "-B", "b0"}}) {
    std::vector<std::string> args = options;
    if (std::find(args.begin(), args.end(), "-l") != args.end()) {
      const std::string with_snapshot = b.t.file("with_snapshot.qcow2");
      std::filesystem::copy_file(b.image, with_snapshot, std::filesystem::copy_options::overwrite_existing);
      ASSERT_EQ(qemu_img({"snapshot", "-c", "s1", with_snapshot}).status, 0);
      args.push_back(with_snapshot);
    } else {
      args.push_back(b.image);
    }
    expect_same_exports(b.t, args, args);
  }
  const std::vector<std::string> writes = {"write -P 7 12M 4k", "write -z 14M 1M", "discard 15M 64k"};
  std::map<std::string, std::string> maps;
  for (const std::string program : {"qemu-nbd", "keel-nbd"}) {
    const std::string image = b.t.file(program + ".qcow2");
    std::filesystem::copy_file(b.image, image, std::filesystem::copy_options::overwrite_existing);
    Served server(program, b.t.file(program + ".sock"), {"-B", "b4096", "-B", "bdis", image});
    ASSERT_TRUE(server.ready());
    qemu_io(server.uri(), "raw", writes);
    maps[program] = map_of(server.uri(), "qemu:dirty-bitmap:b4096") + map_of(server.uri(), "qemu:dirty-bitmap:bdis");
  }
  EXPECT_NE(maps["qemu-nbd"].find("12582912        4096    1  dirty"), std::string::npos) << maps["qemu-nbd"];
  EXPECT_EQ(maps["keel-nbd"], maps["qemu-nbd"]);
  // keel writes no bitmaps back: after its writable export qemu must not trust the stale ones (the autoclear
  // bit is clear), while the read-only exports above left the original image's bitmaps usable.
  const RunResult stale = run({"timeout", "10", "qemu-nbd", "-r", "-B", "b4096", b.t.file("keel-nbd.qcow2")});
  EXPECT_NE(stale.status, 0);
  EXPECT_NE(stale.err.find("Bitmap 'b4096' is not found"), std::string::npos) << stale.err;
  const RunResult info = qemu_img({"info", "--output=json", b.image});
  EXPECT_NE(info.out.find("\"b4096\""), std::string::npos) << info.out;
}

// LIST_META_CONTEXT queries (the qemu: and qemu:dirty-bitmap: wildcards, exact names, unknown ones), SET with
// wildcards (which select nothing) and names, and BLOCK_STATUS with and without REQ_ONE, through libnbd.
TEST(NbdServe, DirtyBitmapContextsNegotiateAsQemuNbd) {
  if (!have_program("nbdsh") || !have_program("qemu-nbd")) GTEST_SKIP() << "nbdsh or qemu-nbd missing";
  const std::string script = R"(
for q in [["qemu:"], ["qemu:dirty-bitmap:"], ["qemu:dirty-bitmap:b4096"], ["qemu:dirty-bitmap:nosuch"],
          ["base:"], ["qemu:allocation-depth", "qemu:dirty-bitmap:b0"], []]:
    h.clear_meta_contexts()
    for x in q:
        h.add_meta_context(x)
    found = []
    print(q, h.opt_list_meta_context(lambda ctx: found.append(ctx)), found)
h.clear_meta_contexts()
for x in ["qemu:dirty-bitmap:", "qemu:", "qemu:dirty-bitmap:b4096", "qemu:dirty-bitmap:b0"]:
    h.add_meta_context(x)
h.opt_go()
extents = []
h.block_status(h.get_size(), 0, lambda c, o, e, err: extents.append((c, o, list(e))))
h.block_status(h.get_size() - 100000, 100000, lambda c, o, e, err: extents.append((c, o, list(e))))
h.block_status(1 << 20, 102400, lambda c, o, e, err: extents.append((c, o, list(e))), nbd.CMD_FLAG_REQ_ONE)
print(sorted(extents))
)";
  BitmapImage b;
  expect_same_nbdsh_output(
      b.t, [&](const std::string&) { return std::vector<std::string>{"-r", "-A", "-B", "b0", "-B", "b4096", b.image}; },
      script);
}

// What qemu-nbd refuses for -l and -B, with its messages: missing snapshots and bitmaps, formats without them,
// a bad -l parameter, and images damaged on purpose (snapshot L1 table, bitmap directory entry and table).
TEST(NbdServe, SnapshotAndBitmapRefusalsAsQemuNbd) {
  if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd missing";
  SnapshotImage s;
  BitmapImage b;
  const std::string raw = s.t.file("disk.raw");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", raw, "1M"}).status, 0);
  for (const std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"-l", "nosuch", s.image},
           {"-l", "snapshot.id=1,snapshot.name=snap2", s.image},
           {"-l", "snapshot.name=", s.image},
           {"-l", "snap1", "-f", "raw", raw},
           {"-l", "snapshot.foo=1", s.image},
           {"-l", "snapshot.id=1,bar", s.image},
           {"-s", "-l", "snap1", s.image},
           {"-r", "-B", "nosuch", b.image},
           {"-r", "-B", "b0", "-f", "raw", raw},
           {"-r", "-l", "nosuch", "-B", "nosuch", s.image},
       })
    expect_same_failure(args);

  auto damaged = [&](const std::string& from, const std::string& name, uint64_t offset, auto value) {
    const std::string to = s.t.file(name);
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
    patch_be(to, offset, value);
    return to;
  };
  const uint64_t snapshots = header_of(s.image).snapshots_offset;
  const uint64_t snap1_l1 = load_be<uint64_t>(file_bytes(s.image, snapshots, 8).data());
  expect_same_failure({"-l", "snap1", damaged(s.image, "l1-unaligned.qcow2", snapshots, snap1_l1 + 8)});

  const FirstBitmap first = first_bitmap(b.image);
  const uint64_t first_entry = load_be<uint64_t>(file_bytes(b.image, first.table_offset, 8).data());
  ASSERT_NE(first_entry, 0u) << "b0 should have a data cluster";
  for (const std::string& image : {
           damaged(b.image, "in-use.qcow2", first.entry + 12, uint32_t{3}),
           damaged(b.image, "table-unaligned.qcow2", first.entry, first.table_offset + 512),
           damaged(b.image, "table-size.qcow2", first.entry + 8, uint32_t{7}),
           damaged(b.image, "type.qcow2", first.entry + 16, uint8_t{2}),
           damaged(b.image, "entry-unaligned.qcow2", first.table_offset, first_entry + 512),
           damaged(b.image, "entry-reserved.qcow2", first.table_offset, first_entry | 4),
       })
    expect_same_failure({"-r", "-B", "b0", image});

  // Damage qemu-nbd serves through, as zeros: a snapshot L1 table and a bitmap data cluster past the end.
  const std::string l1_beyond = damaged(s.image, "l1-beyond.qcow2", snapshots, uint64_t{1} << 40);
  expect_same_exports(s.t, {"-l", "snap1", l1_beyond}, {"-l", "snap1", l1_beyond});
  const std::string data_beyond = damaged(b.image, "data-beyond.qcow2", first.table_offset, uint64_t{1} << 40);
  expect_same_exports(b.t, {"-r", "-B", "b0", data_beyond}, {"-r", "-B", "b0", data_beyond});
}

}  // namespace keel::test::interop
