// The NBD client (nbd/client) against real servers started here, qemu-nbd and
// nbdkit on Unix sockets: keel-img and keel-io on nbd names must print what
// qemu-img and qemu-io print on the same command lines, and images copied
// from or into an export must be the same as qemu's.
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

// A server in the background, ready once its socket listens.
class Server {
 public:
  Server(const std::string& socket, const std::vector<std::string>& argv) : process_(argv) {
    for (int i = 0; i < 500 && !unix_socket_listening(socket); i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(unix_socket_listening(socket)) << "no server listening at " << socket << ": " << join(argv);
  }

 private:
  BackgroundProcess process_;
};

// `persistent` (-t) serves any number of clients; otherwise qemu-nbd ends with its first client, which
// spares it a SIGTERM afterwards (a persistent qemu-nbd was seen to ignore one after its client left).
std::unique_ptr<Server> qemu_nbd(const std::string& socket, const std::string& image, const std::string& fmt,
                                 bool read_only, const std::string& export_name = "x", bool persistent = true) {
  std::vector<std::string> argv{"qemu-nbd", "-k", socket, "-x", export_name, "-f", fmt, image};
  if (persistent) argv.push_back("-t");
  if (read_only) argv.push_back("-r");
  return std::make_unique<Server>(socket, argv);
}

std::unique_ptr<Server> nbdkit(const std::string& socket, const std::vector<std::string>& plugin) {
  std::vector<std::string> argv{"nbdkit", "-f", "--exit-with-parent", "-U", socket};
  argv.insert(argv.end(), plugin.begin(), plugin.end());
  return std::make_unique<Server>(socket, argv);
}

// qemu-io, or keel-io, with `args`.
RunResult io_tool(bool keel, std::vector<std::string> args) {
  args.insert(args.begin(), keel ? keel_bin("keel-io") : "qemu-io");
  return run(args);
}

std::string unix_uri(const std::string& socket, const std::string& export_name = "x") {
  return "nbd+unix:///" + export_name + "?socket=" + socket;
}

class NbdClient : public ::testing::Test {
 protected:
  void SetUp() override {
    KEEL_REQUIRE_QEMU();
    if (!have_program("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  }
  // A qcow2 image with data, an explicit zero cluster range and unallocated space.
  std::string make_qcow2(const std::string& name) {
    const std::string image = dir_.file(name);
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "qcow2", image, "64M"}).status, 0);
    qemu_io(image, "qcow2", {"write -P 0x11 0 1M", "write -z 2M 1M", "write -P 0x22 5M 64k"});
    return image;
  }
  void require_nbdkit() {
    if (!have_program("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  }
  TempDir dir_;
};

TEST_F(NbdClient, InfoMatchesQemuForEveryNameForm) {
  const std::string image = make_qcow2("a.qcow2"), socket = dir_.file("s");
  auto served_raw = qemu_nbd(socket, image, "qcow2", true);  // the qcow2's guest bytes: probes as raw
  const std::string socket2 = dir_.file("s2");
  auto served_qcow2 = qemu_nbd(socket2, image, "raw", true);  // the file's bytes: probes as qcow2
  for (const std::string& name :
       {unix_uri(socket), "nbd:unix:" + socket + ":exportname=x", unix_uri(socket2), "nbd+unix://?socket=" + socket}) {
    for (const std::string& output : {"human", "json"}) same_as_qemu({"info", "--output=" + output, name});
    same_as_qemu({"info", "-f", "raw", name});
  }
}

TEST_F(NbdClient, ErrorsMatchQemu) {
  const std::string image = make_qcow2("a.qcow2"), socket = dir_.file("s");
  auto server = qemu_nbd(socket, image, "qcow2", true);
  for (const std::string& name :
       {"nbd+unix:///x?socket=" + dir_.file("nonexistent"), unix_uri(socket, "unknown"), "nbd:unix:" + socket,
        std::string("nbd:"), std::string("nbd:foo"), std::string("nbd+unix:///x"),
        "nbd+unix://host/x?socket=" + socket, "nbd+unix:///x?socket=" + socket + "&foo=1"})
    same_as_qemu({"info", name});
  // A read-only export opened for writing.
  const RunResult r = same_as_qemu({"convert", "-n", "-O", "raw", image, unix_uri(socket)});
  EXPECT_NE(r.status, 0);
}

// TLS is tested in nbd_tls_test.cpp; here only the names: nbds without credentials, or with a query that is
// not keel's, is refused in one line before connecting.
TEST_F(NbdClient, NbdsNamesNeedCredentialsAndAValidQuery) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"nbds+unix:///x?socket=" + dir_.file("s"), "TLS credentials"},
      {"nbds://localhost/x", "TLS credentials"},
      {"nbds+unix:///x?socket=" + dir_.file("s") + "&tls-certificates=/x", "No valid URL specified"},
      {"nbd+unix:///x?socket=" + dir_.file("s") + "&tls-creds=a", "No valid URL specified"},
  };
  for (const auto& [name, expected] : cases) {
    const RunResult r = keel_img({"info", name});
    EXPECT_EQ(r.status, 1) << name;
    EXPECT_EQ(split_lines(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
  }
}

TEST_F(NbdClient, ConvertFromAnExportMatchesQemu) {
  const std::string image = make_qcow2("a.qcow2");
  // Served as raw (qemu-nbd reads the qcow2) and as the qcow2 file itself (keel opens the qcow2 over NBD).
  for (const std::string& served_format : {"qcow2", "raw"}) {
    const std::string socket = dir_.file("s-" + served_format);
    auto server = qemu_nbd(socket, image, served_format, true);
    for (const std::string& out_format : {"qcow2", "raw"}) {
      const std::string keel_out = dir_.file("k." + out_format), qemu_out = dir_.file("q." + out_format);
      ASSERT_EQ(keel_img({"convert", "-O", out_format, unix_uri(socket), keel_out}).status, 0);
      ASSERT_EQ(qemu_img({"convert", "-O", out_format, unix_uri(socket), qemu_out}).status, 0);
      EXPECT_EQ(qemu_img({"compare", keel_out, qemu_out}).status, 0) << served_format << " -> " << out_format;
      EXPECT_EQ(qemu_img({"compare", "-f", "qcow2", image, keel_out}).status, 0);
      EXPECT_TRUE(same_allocation(allocation_map(keel_out, out_format), allocation_map(qemu_out, out_format)))
          << served_format << " -> " << out_format;
    }
  }
}

TEST_F(NbdClient, ConvertIntoAnExport) {
  const std::string image = make_qcow2("a.qcow2"), target = dir_.file("target.raw"), socket = dir_.file("s");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", target, "64M"}).status, 0);
  qemu_io(target, "raw", {"write -P 0x55 0 8M"});  // stale contents the copy must overwrite, zeros included
  {
    auto server = qemu_nbd(socket, target, "raw", false);
    const RunResult r = keel_img({"convert", "-n", "-O", "raw", image, unix_uri(socket)});
    EXPECT_EQ(r.status, 0) << describe("keel-img convert", r);
  }
  EXPECT_EQ(qemu_img({"compare", "-f", "qcow2", "-F", "raw", image, target}).status, 0);
}

// The same qemu-io command lines through keel-io and qemu-io, each against a fresh server.
void expect_same_io(const std::function<std::unique_ptr<Server>(const std::string& socket)>& start,
                    const std::string& socket_dir, const std::vector<std::string>& commands) {
  std::vector<std::string> args{"-f", "raw"};
  for (const auto& c : commands) args.insert(args.end(), {"-c", c});
  Runs runs;
  {
    auto server = start(socket_dir + "/q");
    std::vector<std::string> q = args;
    q.push_back(unix_uri(socket_dir + "/q", ""));
    runs.qemu = io_tool(false, q);
  }
  {
    auto server = start(socket_dir + "/k");
    std::vector<std::string> k = args;
    k.push_back(unix_uri(socket_dir + "/k", ""));
    runs.keel = io_tool(true, k);
  }
  // The names differ only by socket.
  runs.qemu.err = replace_all(runs.qemu.err, socket_dir + "/q", socket_dir + "/k");
  runs.qemu.out = replace_all(runs.qemu.out, socket_dir + "/q", socket_dir + "/k");
  expect_same(runs, join(commands), true);  // aio requests may complete in either order
}

const std::vector<std::string> kIoCommands = {
    "write -P 0x33 0 64k", "write -z 1M 64k",  "write -P 0x44 2M 128k", "discard 2M 64k", "flush",
    "read -P 0x33 0 64k",  "read -P 0 1M 64k", "read -v 2M 16",         "write -f 3M 4k", "aio_write 4M 64k",
    "aio_write 5M 64k",    "aio_flush",        "map",                   "alloc 0 4M",     "write -z -u 4M 64k",
    "map"};

TEST_F(NbdClient, IoCommandsMatchQemuAgainstNbdkitMemory) {
  require_nbdkit();
  expect_same_io([](const std::string& s) { return nbdkit(s, {"memory", "64M"}); }, dir_.path(), kIoCommands);
}

TEST_F(NbdClient, IoCommandsMatchQemuAgainstNbdkitFileAndQemuNbd) {
  require_nbdkit();
  for (const std::string& server : {"nbdkit", "qemu-nbd"}) {
    const std::string qfile = dir_.file(server + "-q.raw"), kfile = dir_.file(server + "-k.raw");
    for (const auto& f : {qfile, kfile}) ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", f, "64M"}).status, 0);
    expect_same_io(
        [&](const std::string& s) {
          const std::string& file = s.ends_with("/q") ? qfile : kfile;
          if (server == "nbdkit") return nbdkit(s, {"file", file});
          return qemu_nbd(s, file, "raw", false, "", false);
        },
        dir_.path(), kIoCommands);
    EXPECT_TRUE(files_identical(kfile, qfile)) << server;
  }
}

TEST_F(NbdClient, ServerGoneFailsRequestsWithoutHanging) {
  std::vector<std::string> commands = {"read 0 4k", "sleep 1500", "read 0 4k", "write 0 4k", "flush", "map"};
  const std::string qfile = dir_.file("q.raw"), kfile = dir_.file("k.raw");
  for (const auto& f : {qfile, kfile}) ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", f, "4M"}).status, 0);
  auto scenario = [&](const std::string& socket, const std::string& file, bool keel) {
    auto server = qemu_nbd(socket, file, "raw", false, "");
    // The server goes away while the tool sleeps between its requests.
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      server.reset();
    });
    std::vector<std::string> args{"-f", "raw"};
    for (const auto& c : commands) args.insert(args.end(), {"-c", c});
    args.push_back(unix_uri(socket, ""));
    RunResult r = io_tool(keel, args);
    killer.join();
    return r;
  };
  Runs runs;
  runs.qemu = scenario(dir_.file("q"), qfile, false);
  runs.keel = scenario(dir_.file("k"), kfile, true);
  runs.qemu.err = replace_all(runs.qemu.err, dir_.file("q"), dir_.file("k"));
  expect_same(runs, "server killed during sleep", false);
}

}  // namespace
}  // namespace keel::test::interop
