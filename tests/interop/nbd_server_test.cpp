// keel-nbd against qemu-nbd: the same image served by each, with the same
// options, must look the same to real NBD clients (nbdinfo's export fields
// and maps, nbdsh's request-level answers), and every client of libnbd and
// qemu (nbdcopy, nbdinfo, qemu-img, qemu-io) must read and write through it.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

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
  std::map<std::string, std::string> outputs;
  for (const std::string program : {"qemu-nbd", "keel-nbd"}) {
    const std::string image = images.copy(images.overlay, program + ".qcow2");
    Served server(program, images.t.file(program + ".sock"), {"-A", "-f", "qcow2", image});
    ASSERT_TRUE(server.ready());
    // nbdsh runs `python3`: Debian's, where the nbd module is, not one earlier in PATH.
    const RunResult r = run({"env", "PATH=/usr/bin:/bin", "nbdsh", "--opt-mode", "-u", server.uri(), "-c",
                             "h.add_meta_context('base:allocation')\n"
                             "h.add_meta_context('qemu:allocation-depth')\n"
                             "h.opt_go()\n" + script});
    EXPECT_EQ(r.status, 0) << program << ": " << r.err;
    outputs[program] = r.out;
  }
  EXPECT_EQ(outputs["keel-nbd"], outputs["qemu-nbd"]);
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

}  // namespace keel::test::interop
