// keel-nbd with TLS against qemu-nbd given the same --object and --tls-creds:
// certificates made here with openssl (a CA, a server certificate for
// localhost and 127.0.0.1, a client certificate) and a PSK file with a random
// key; libnbd's (nbdinfo, nbdcopy) and qemu's (qemu-img, qemu-io) clients, both
// GnuTLS, must get the same outcome from both servers: served over x509 and
// PSK, refused in plaintext (NBD_REP_ERR_TLS_REQD, never an export), refused
// without a client certificate when verify-peer is on, and with a wrong key.
// keel's own client (keel-img, keel-io, keel-nbd -L over nbds names and
// --object ...,endpoint=client) against both servers, and --tls-authz, come
// after.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "tests/interop/interop_util.h"
#include "tests/support/nbd_server_process.h"
#include "tests/support/raw_nbd_client.h"

namespace keel::test::interop {

namespace {

constexpr uint32_t kOptExportName = 1, kOptStartTls = 5, kOptGo = 7;
constexpr uint32_t kRepAck = 1, kRepErrTlsReqd = 0x80000005;

void must_run(const std::vector<std::string>& argv) {
  const RunResult r = run(argv);
  ASSERT_EQ(r.status, 0) << describe(join(argv), r);
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Everything the servers and clients read, made once for the suite.
struct Credentials {
  TempDir t;
  std::string server = t.file("server"), client = t.file("client"), no_client_cert = t.file("nocert");
  std::string other_ca = t.file("otherca");  // only a CA that did not sign the server's certificate
  std::string psk = t.file("psk"), wrong_psk = t.file("wrongpsk");

  Credentials() {
    for (const auto& dir : {server, client, no_client_cert, psk, wrong_psk, other_ca})
      std::filesystem::create_directory(dir);
    const std::string ca_key = t.file("ca-key.pem"), ca = server + "/ca-cert.pem";
    must_run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
              "-subj", "/CN=keel test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
              "keyUsage=critical,keyCertSign,cRLSign"});
    sign(server + "/server-key.pem", server + "/server-cert.pem", "/CN=localhost",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    sign(client + "/client-key.pem", client + "/client-cert.pem", "/O=Keel Test/CN=keel test client",
         "extendedKeyUsage=clientAuth\n");
    for (const auto& dir : {client, no_client_cert}) std::filesystem::copy_file(ca, dir + "/ca-cert.pem");
    must_run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", t.file("other-ca-key.pem"),
              "-out", other_ca + "/ca-cert.pem", "-days", "2", "-subj", "/CN=another CA", "-addext",
              "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    write_text(psk + "/keys.psk", "alice:" + random_hex() + "\n");
    write_text(wrong_psk + "/keys.psk", "alice:" + random_hex() + "\n");
  }

  void sign(const std::string& key, const std::string& cert, const std::string& subject, const std::string& ext) {
    const std::string csr = t.file("request.csr"), extfile = t.file("extensions");
    write_text(extfile, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" + ext);
    must_run({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject});
    must_run({"openssl", "x509", "-req", "-in", csr, "-CA", server + "/ca-cert.pem", "-CAkey", t.file("ca-key.pem"),
              "-CAcreateserial", "-CAserial", t.file("ca.srl"), "-out", cert, "-days", "2", "-extfile", extfile});
  }

  static std::string random_hex() {
    const RunResult r = run({"openssl", "rand", "-hex", "32"});
    EXPECT_EQ(r.status, 0);
    return r.out.substr(0, r.out.find('\n'));
  }
};

const std::string kImageSize = "4M";

class NbdTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (have_program("openssl") && have_program("nbdinfo") && have_program("qemu-nbd"))
      credentials_ = new Credentials;
  }
  static void TearDownTestSuite() {
    delete credentials_;
    credentials_ = nullptr;
  }
  void SetUp() override {
    if (!credentials_) GTEST_SKIP() << "openssl, nbdinfo or qemu-nbd missing";
  }
  const Credentials& creds() const { return *credentials_; }

  // A fresh image for `kind` served with `object` as --tls-creds.
  std::unique_ptr<NbdServerProcess> serve(NbdServerKind kind, const std::string& object,
                                          const std::vector<std::string>& options = {}) {
    const std::string name = nbd_server_name(kind);
    const std::string image = t_.file(name + ".raw");
    EXPECT_EQ(qemu_img({"create", "-q", "-f", "raw", image, kImageSize}).status, 0);
    return std::make_unique<NbdServerProcess>(
        kind, t_.file(name + ".sock"),
        [&] {
          std::vector<std::string> args{"--object", object, "--tls-creds=tls0", "-f", "raw", image};
          args.insert(args.begin(), options.begin(), options.end());
          return args;
        }());
  }

  // Runs `client(socket)` against qemu-nbd and keel-nbd serving with `object`; both must succeed or both fail.
  // Returns whether they succeeded.
  template <typename Client>
  bool same_outcome(const std::string& object, Client client) {
    auto qemu = serve(NbdServerKind::Qemu, object);
    auto keel = serve(NbdServerKind::Keel, object);
    const RunResult q = client(qemu->socket());
    const RunResult k = client(keel->socket());
    EXPECT_EQ(k.status == 0, q.status == 0) << describe("qemu-nbd", q) << describe("keel-nbd", k);
    return q.status == 0;
  }

  TempDir t_;
  static Credentials* credentials_;
};

Credentials* NbdTls::credentials_ = nullptr;

std::string x509_object(const std::string& dir, const std::string& extra = "") {
  return "tls-creds-x509,id=tls0,dir=" + dir + ",endpoint=server" + extra;
}

std::string psk_object(const std::string& dir) { return "tls-creds-psk,id=tls0,dir=" + dir + ",endpoint=server"; }

// The same arguments run by qemu-nbd and by keel-nbd: {qemu's result, keel's}.
std::pair<RunResult, RunResult> qemu_nbd_and_keel_nbd(const std::vector<std::string>& args) {
  std::vector<std::string> qargs{"qemu-nbd"}, kargs{keel_bin("keel-nbd")};
  qargs.insert(qargs.end(), args.begin(), args.end());
  kargs.insert(kargs.end(), args.begin(), args.end());
  return {run(qargs), run(kargs)};
}

RunResult nbdinfo(const std::string& uri) { return run({"nbdinfo", "--json", uri}); }

std::string x509_uri(const std::string& socket, const std::string& certificates) {
  return "nbds+unix:///?socket=" + socket + "&tls-certificates=" + certificates;
}

std::string psk_uri(const std::string& socket, const std::string& psk_dir) {
  return "nbds+unix://alice@/?socket=" + socket + "&tls-psk-file=" + psk_dir + "/keys.psk";
}

// qemu's clients over x509 name the host to check the server certificate against (a Unix socket has none).
std::vector<std::string> qemu_x509_client(const std::string& dir, const std::string& socket,
                                          const std::string& extra = "") {
  return {"--object", "tls-creds-x509,id=tls0,dir=" + dir + ",endpoint=client" + extra, "--image-opts",
          "driver=nbd,path=" + socket + ",tls-creds=tls0,tls-hostname=localhost"};
}

std::vector<std::string> qemu_psk_client(const std::string& dir, const std::string& socket,
                                         const std::string& extra = "") {
  return {"--object", "tls-creds-psk,id=tls0,dir=" + dir + ",endpoint=client,username=alice" + extra, "--image-opts",
          "driver=nbd,path=" + socket + ",tls-creds=tls0"};
}

RunResult qemu_img_info(std::vector<std::string> client) {
  client.insert(client.begin(), {"qemu-img", "info"});
  return run(client);
}

// Writes a pattern and reads it back through the TLS connection.
RunResult qemu_io_round_trip(std::vector<std::string> client) {
  client.insert(client.begin(), "qemu-io");
  for (const char* c : {"write -P 0x5a 64k 1M", "read -P 0x5a 64k 1M", "read -P 0 2M 64k"})
    client.insert(client.end(), {"-c", c});
  RunResult r = run(client);
  if (r.out.find("Pattern verification failed") != std::string::npos) r.status = 1;
  return r;
}

}  // namespace

TEST_F(NbdTls, X509ServesLibnbdAndQemuClientsWithClientCertificates) {
  const std::string object = x509_object(creds().server);
  auto qemu = serve(NbdServerKind::Qemu, object);
  auto keel = serve(NbdServerKind::Keel, object);
  const RunResult q = nbdinfo(x509_uri(qemu->socket(), creds().client));
  const RunResult k = nbdinfo(x509_uri(keel->socket(), creds().client));
  ASSERT_EQ(q.status, 0) << describe("nbdinfo, qemu-nbd", q);
  ASSERT_EQ(k.status, 0) << describe("nbdinfo, keel-nbd", k);
  auto fields = [](const std::string& out) {
    nlohmann::json j = nlohmann::json::parse(out);
    for (auto& e : j["exports"]) e.erase("uri");
    return j;
  };
  EXPECT_EQ(fields(k.out), fields(q.out));
  EXPECT_EQ(fields(k.out)["TLS"], true);
  const RunResult info = qemu_img_info(qemu_x509_client(creds().client, keel->socket()));
  EXPECT_EQ(info.status, 0) << describe("qemu-img info", info);
  const RunResult io = qemu_io_round_trip(qemu_x509_client(creds().client, keel->socket()));
  EXPECT_EQ(io.status, 0) << describe("qemu-io", io);
  // nbdcopy's parallel requests over one TLS session: the data comes back whole.
  const std::string in = t_.file("in.raw"), out = t_.file("out.raw");
  write_file(in, random_bytes(4 << 20, 8));
  const std::string uri = x509_uri(keel->socket(), creds().client);
  for (const auto& argv : {std::vector<std::string>{"nbdcopy", in, uri}, {"nbdcopy", uri, out}})
    if (have_program("nbdcopy")) must_run(argv);
  if (have_program("nbdcopy")) EXPECT_EQ(read_file(out), read_file(in));
}

// TLS sessions on connection threads (--threads): four connections, each encrypting on its own loop, copy data in
// and out whole.
TEST_F(NbdTls, SessionsOnConnectionThreadsCopyWhole) {
  if (!have_program("nbdcopy")) GTEST_SKIP() << "nbdcopy missing";
  auto keel = serve(NbdServerKind::Keel, x509_object(creds().server), {"-e", "4", "--threads", "2"});
  const std::string in = t_.file("in.raw"), out = t_.file("out.raw");
  write_file(in, random_bytes(4 << 20, 9));
  const std::string uri = x509_uri(keel->socket(), creds().client);
  must_run({"nbdcopy", "--connections=4", in, uri});
  must_run({"nbdcopy", "--connections=4", uri, out});
  EXPECT_EQ(read_file(out), read_file(in));
}

TEST_F(NbdTls, PlaintextClientIsRefusedAndNeverServed) {
  const std::string object = x509_object(creds().server);
  EXPECT_FALSE(same_outcome(object, [](const std::string& socket) {
    return nbdinfo("nbd+unix:///?socket=" + socket);
  }));
  auto keel = serve(NbdServerKind::Keel, object);
  // GO before STARTTLS is answered NBD_REP_ERR_TLS_REQD; EXPORT_NAME, which cannot be answered so, ends the connection.
  RawNbdClient client(keel->socket());
  ASSERT_TRUE(client.read_greeting());
  Buffer flags;
  put_be32(flags, 3);
  client.send(flags);
  const Buffer go = go_payload("");
  client.send(option_bytes(kOptGo, static_cast<uint32_t>(go.size()), go));
  const auto reply = client.option_reply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, kRepErrTlsReqd);
  client.send(option_bytes(kOptExportName, 0));
  EXPECT_TRUE(client.closed_within());
}

TEST_F(NbdTls, VerifyPeerRefusesClientsWithoutCertificatesUnlessOff) {
  auto without_certificate = [&](const std::string& socket) {
    return nbdinfo(x509_uri(socket, creds().no_client_cert));
  };
  EXPECT_FALSE(same_outcome(x509_object(creds().server), without_certificate));
  EXPECT_FALSE(same_outcome(x509_object(creds().server, ",verify-peer=on"), without_certificate));
  EXPECT_TRUE(same_outcome(x509_object(creds().server, ",verify-peer=off"), without_certificate));
  EXPECT_TRUE(same_outcome(x509_object(creds().server, ",verify-peer=off"), [&](const std::string& socket) {
    return qemu_img_info(qemu_x509_client(creds().no_client_cert, socket));
  }));
}

TEST_F(NbdTls, PskServesTheRightKeyAndRefusesAWrongOne) {
  const std::string object = psk_object(creds().psk);
  EXPECT_TRUE(same_outcome(object, [&](const std::string& socket) { return nbdinfo(psk_uri(socket, creds().psk)); }));
  EXPECT_TRUE(same_outcome(object, [&](const std::string& socket) {
    return qemu_io_round_trip(qemu_psk_client(creds().psk, socket));
  }));
  EXPECT_FALSE(same_outcome(object, [&](const std::string& socket) {
    return nbdinfo(psk_uri(socket, creds().wrong_psk));
  }));
  EXPECT_FALSE(same_outcome(object, [&](const std::string& socket) {
    return qemu_img_info(qemu_psk_client(creds().wrong_psk, socket));
  }));
}

// GnuTLS clients pick TLS 1.3; one held to TLS 1.2 (qemu's priority string) gets the 1.2 suites, x509 and PSK.
TEST_F(NbdTls, Tls12ClientsAreServed) {
  const std::string tls12 = ",priority=NORMAL:-VERS-TLS1.3";
  EXPECT_TRUE(same_outcome(x509_object(creds().server), [&](const std::string& socket) {
    return qemu_io_round_trip(qemu_x509_client(creds().client, socket, tls12));
  }));
  EXPECT_TRUE(same_outcome(psk_object(creds().psk), [&](const std::string& socket) {
    return qemu_io_round_trip(qemu_psk_client(creds().psk, socket, tls12));
  }));
  EXPECT_FALSE(same_outcome(psk_object(creds().psk), [&](const std::string& socket) {
    return qemu_img_info(qemu_psk_client(creds().wrong_psk, socket, tls12));
  }));
}

// A client that garbles the TLS handshake is dropped, as by qemu-nbd, and one that stalls in it is dropped at
// the handshake deadline (keel-nbd only: qemu-nbd 7.2 has no --handshake-limit).
TEST_F(NbdTls, BrokenTlsHandshakesEndTheConnection) {
  for (const NbdServerKind kind : {NbdServerKind::Qemu, NbdServerKind::Keel}) {
    const bool keel = kind == NbdServerKind::Keel;
    auto server = serve(kind, x509_object(creds().server), keel ? std::vector<std::string>{"--handshake-limit=1"}
                                                                : std::vector<std::string>{});
    for (const bool garbage : keel ? std::vector<bool>{false, true} : std::vector<bool>{true}) {
      RawNbdClient client(server->socket());
      ASSERT_TRUE(client.read_greeting());
      Buffer flags;
      put_be32(flags, 3);
      client.send(flags);
      client.send(option_bytes(kOptStartTls, 0));
      const auto reply = client.option_reply();
      ASSERT_TRUE(reply) << nbd_server_name(kind);
      EXPECT_EQ(reply->type, kRepAck) << nbd_server_name(kind);
      // Not a TLS record: an NBD option, as a client that ignored the ACK would send.
      if (garbage) client.send(option_bytes(kOptGo, 0));
      EXPECT_TRUE(client.closed_within(std::chrono::seconds(5))) << nbd_server_name(kind) << " garbage " << garbage;
    }
    EXPECT_FALSE(server->exited()) << nbd_server_name(kind);
  }
}

// Bad TLS command lines: the same message as qemu-nbd (program name aside) and a failure.
TEST_F(NbdTls, CommandLineErrorsMatchQemuNbd) {
  const std::string image = t_.file("cli.raw");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", image, "1M"}).status, 0);
  const std::string server = creds().server;
  const std::vector<std::vector<std::string>> cases = {
      {"--tls-creds=nope"},
      {"--object", x509_object(server), "--tls-creds=other"},
      {"--object", "tls-creds-x509,id=tls0,dir=" + server + ",endpoint=client", "--tls-creds=tls0"},
      {"--object", "tls-creds-x509,id=tls0,dir=" + creds().psk, "--tls-creds=tls0"},
      {"--object", "tls-creds-psk,id=tls0,dir=" + server, "--tls-creds=tls0"},
      {"--object", "tls-creds-x509,dir=" + server},
      {"--object", "tls-creds-x509,id=tls0"},
      {"--object", x509_object(server, ",bogus=1")},
      {"--object", "tls-creds-x509,id=tls0,dir=" + server + ",endpoint=both"},
      {"--object", x509_object(server, ",verify-peer=maybe")},
      {"--object", x509_object(creds().psk), "--tls-creds=tls0"},
      {"--object", psk_object(server), "--tls-creds=tls0"},
      {"--tls-authz=authz0"},
      {"--object", "tls-creds-psk,id=tls0,dir=" + creds().psk + ",endpoint=server,username=alice",
       "--tls-creds=tls0"},
      {"--object", "authz-simple,id=authz0", "--object", x509_object(server), "--tls-creds=tls0",
       "--tls-authz=authz0"},
      {"--object", "authz-simple,id=tls0,identity=x", "--object", x509_object(server), "--tls-creds=tls0"},
      {"--tls-hostname=localhost"},
      {"--object", psk_object(creds().psk), "--tls-creds=tls0", "--tls-hostname=localhost"},
  };
  for (const auto& options : cases) {
    std::vector<std::string> args = options;
    args.insert(args.end(), {"-k", t_.file("never.sock"), "-f", "raw", image});
    const auto [q, k] = qemu_nbd_and_keel_nbd(args);
    EXPECT_NE(q.status, 0) << join(args);
    EXPECT_EQ(k.status, q.status) << join(args);
    EXPECT_EQ(k.err, replace_all(q.err, "qemu-nbd: ", "keel-nbd: ")) << join(args);
  }
}

// --- keel's NBD client over TLS ---

namespace {

std::string client_x509_object(const std::string& dir, const std::string& extra = "") {
  return "tls-creds-x509,id=tls0,dir=" + dir + ",endpoint=client" + extra;
}

std::string client_psk_object(const std::string& dir) {
  return "tls-creds-psk,id=tls0,dir=" + dir + ",endpoint=client,username=alice";
}

std::string nbds_unix(const std::string& socket) { return "nbds+unix:///?socket=" + socket; }

// A port nobody listens on now (the kernel's pick, released again).
std::string free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), size), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  ::close(fd);
  return std::to_string(ntohs(addr.sin_port));
}

// True once something accepts connections on 127.0.0.1:`port` (the servers run with -t: a probe is harmless).
bool tcp_listening(const std::string& port) {
  for (int attempt = 0; attempt < 200; attempt++) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (up) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace

// keel-img info and keel-io reads over nbds+unix://, x509 and PSK, from qemu-nbd and keel-nbd alike; the data
// qemu-io wrote over TLS reads back. x509 over a Unix socket has no host name to check the server against (qemu's
// clients need tls-hostname, which libnbd cannot take), so those clients run with verify-peer=off; TCP checks it.
TEST_F(NbdTls, KeelClientsReadOverTlsFromBothServers) {
  struct Case {
    std::string server_object, keel_client_object;
    std::vector<std::string> (*qemu_client)(const std::string&, const std::string&, const std::string&);
    std::string qemu_dir;
  };
  const std::vector<Case> cases = {
      {x509_object(creds().server), client_x509_object(creds().client, ",verify-peer=off"), qemu_x509_client,
       creds().client},
      {psk_object(creds().psk), client_psk_object(creds().psk), qemu_psk_client, creds().psk},
  };
  for (const Case& c : cases) {
    std::vector<std::string> info_outputs;
    for (const NbdServerKind kind : {NbdServerKind::Qemu, NbdServerKind::Keel}) {
      auto server = serve(kind, c.server_object);
      const std::string what = nbd_server_name(kind) + " " + c.server_object;
      std::vector<std::string> write = c.qemu_client(c.qemu_dir, server->socket(), "");
      write.insert(write.begin(), "qemu-io");
      write.insert(write.end(), {"-c", "write -P 0x5a 64k 1M"});
      const RunResult w = run(write);
      ASSERT_EQ(w.status, 0) << describe(what, w);
      const RunResult info = keel_img({"info", "--object", c.keel_client_object, nbds_unix(server->socket())});
      EXPECT_EQ(info.status, 0) << describe(what, info);
      info_outputs.push_back(replace_all(info.out, server->socket(), "SOCKET"));
      const RunResult io = run_keel({"keel-io", "--object", c.keel_client_object, "-f", "raw", "-c",
                                     "read -P 0x5a 64k 1M", "-c", "read -P 0 2M 64k",
                                     nbds_unix(server->socket()) + "&tls-creds=tls0"});
      EXPECT_EQ(io.status, 0) << describe(what, io);
      EXPECT_EQ(io.out.find("Pattern verification failed"), std::string::npos) << io.out;
      EXPECT_NE(io.out.find("read 1048576/1048576 bytes at offset 65536"), std::string::npos) << io.out;
    }
    EXPECT_EQ(info_outputs[0], info_outputs[1]);
    EXPECT_NE(info_outputs[0].find("virtual size: 4 MiB"), std::string::npos) << info_outputs[0];
  }
}

// Refusals are one line and a failure: plaintext to a TLS-only server, an nbds name without credentials, x509
// verification over a Unix socket (as qemu-nbd -L refuses it without --tls-hostname), a wrong PSK.
TEST_F(NbdTls, KeelClientRefusalsAreOneLine) {
  for (const NbdServerKind kind : {NbdServerKind::Qemu, NbdServerKind::Keel}) {
    auto server = serve(kind, x509_object(creds().server));
    const std::vector<std::vector<std::string>> cases = {
        {"info", "nbd+unix:///?socket=" + server->socket()},
        {"info", nbds_unix(server->socket())},
        {"info", "--object", client_x509_object(creds().client), nbds_unix(server->socket())},
        {"info", "--object", client_x509_object(creds().client, ",verify-peer=off"),
         nbds_unix(server->socket()) + "&tls-creds=nope"},
    };
    for (const auto& args : cases) {
      const RunResult r = keel_img(args);
      EXPECT_NE(r.status, 0) << join(args);
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << join(args) << "\n" << r.err;
    }
  }
  auto psk_server = serve(NbdServerKind::Keel, psk_object(creds().psk));
  const RunResult wrong = keel_img({"info", "--object", client_psk_object(creds().wrong_psk),
                                    nbds_unix(psk_server->socket())});
  EXPECT_NE(wrong.status, 0) << wrong.err;
}

// Over TCP libnbd checks the server's certificate against the host: the right CA is served, another CA is
// refused, as qemu-img refuses it; -L lists the same as qemu-nbd -L. Against qemu-nbd and keel-nbd alike.
TEST_F(NbdTls, TcpChecksTheServerCertificateAndListsLikeQemuNbd) {
  for (const std::string server_program : {"qemu-nbd", "keel-nbd"}) {
    const std::string image = t_.file(server_program + ".tcp.raw"), port = free_port();
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", image, kImageSize}).status, 0);
    BackgroundProcess server({server_program == "keel-nbd" ? keel_bin("keel-nbd") : "qemu-nbd", "-t", "-b",
                              "127.0.0.1", "-p", port, "--object", x509_object(creds().server, ",verify-peer=off"),
                              "--tls-creds=tls0", "-f", "raw", image});
    ASSERT_TRUE(tcp_listening(port)) << server_program;
    for (const std::string host : {"localhost", "127.0.0.1"}) {
      const std::string name = "nbds://" + host + ":" + port;
      const RunResult ok = keel_img({"info", "--object", client_x509_object(creds().client), name});
      EXPECT_EQ(ok.status, 0) << describe(server_program + " " + name, ok);
      const RunResult io = run_keel({"keel-io", "--object", client_x509_object(creds().client), "-f", "raw", "-c",
                                     "read -P 0 0 64k", name});
      EXPECT_EQ(io.status, 0) << describe(server_program + " " + name, io);
    }
    const std::string qemu_opts = "driver=nbd,host=localhost,port=" + port + ",tls-creds=tls0";
    for (const std::string& dir : {creds().client, creds().other_ca}) {
      const RunResult k = keel_img({"info", "--object", client_x509_object(dir), "nbds://localhost:" + port});
      const RunResult q = run({"qemu-img", "info", "--object", client_x509_object(dir), "--image-opts", qemu_opts});
      EXPECT_EQ(k.status == 0, q.status == 0) << server_program << describe("keel-img", k) << describe("qemu-img", q);
      EXPECT_EQ(k.status == 0, dir == creds().client) << server_program << describe("keel-img", k);
      const auto [ql, kl] = qemu_nbd_and_keel_nbd({"-L", "-b", "127.0.0.1", "-p", port, "--object",
                                                   client_x509_object(dir), "--tls-creds", "tls0"});
      EXPECT_EQ(kl.status, ql.status) << server_program << describe("qemu-nbd -L", ql) << describe("keel-nbd -L", kl);
      EXPECT_EQ(kl.out, ql.out) << server_program;
    }
  }
}

// -L over a Unix socket: PSK and x509 without server verification list as qemu-nbd -L lists; x509 with it is
// refused by both ("No hostname for certificate validation").
TEST_F(NbdTls, ListOverTlsMatchesQemuNbd) {
  struct Case {
    std::string server_object, client_object;
  };
  const std::vector<Case> cases = {
      {psk_object(creds().psk), client_psk_object(creds().psk)},
      {x509_object(creds().server), client_x509_object(creds().client, ",verify-peer=off")},
      {x509_object(creds().server), client_x509_object(creds().client)},
  };
  for (const Case& c : cases) {
    for (const NbdServerKind kind : {NbdServerKind::Qemu, NbdServerKind::Keel}) {
      auto server = serve(kind, c.server_object);
      const std::vector<std::string> args{"-L", "-k", server->socket(), "--object", c.client_object,
                                          "--tls-creds=tls0"};
      const auto [q, k] = qemu_nbd_and_keel_nbd(args);
      const std::string what = nbd_server_name(kind) + " " + c.client_object;
      EXPECT_EQ(k.status, q.status) << what << describe("qemu-nbd -L", q) << describe("keel-nbd -L", k);
      EXPECT_EQ(k.out, q.out) << what;
      if (q.status != 0) EXPECT_EQ(k.err, replace_all(q.err, "qemu-nbd: ", "keel-nbd: ")) << what;
    }
  }
  // qemu-nbd checks the certificate against --tls-hostname over a Unix socket; libnbd cannot, so keel-nbd refuses
  // in one line rather than list unverified.
  auto server = serve(NbdServerKind::Keel, x509_object(creds().server));
  const auto [q, k] = qemu_nbd_and_keel_nbd({"-L", "-k", server->socket(), "--object",
                                             client_x509_object(creds().client), "--tls-creds=tls0",
                                             "--tls-hostname=localhost"});
  EXPECT_EQ(q.status, 0) << describe("qemu-nbd -L", q);
  EXPECT_NE(k.status, 0);
  EXPECT_EQ(split_lines(k.err).size(), 1u) << k.err;
  // Credentials that are not a client's, or none by that id: qemu-nbd's errors.
  const std::vector<std::pair<std::string, std::string>> wrong = {{x509_object(creds().server), "tls0"},
                                                                   {client_x509_object(creds().client), "other"}};
  for (const auto& [object, id] : wrong) {
    const auto [qe, ke] =
        qemu_nbd_and_keel_nbd({"-L", "-k", server->socket(), "--object", object, "--tls-creds=" + id});
    EXPECT_NE(qe.status, 0);
    EXPECT_EQ(ke.status, qe.status) << object;
    EXPECT_EQ(ke.err, replace_all(qe.err, "qemu-nbd: ", "keel-nbd: ")) << object;
  }
}

// --tls-authz with authz-simple: the right identity (the certificate's DN as GnuTLS prints it, or the PSK
// username) is served and a wrong one refused, by qemu-nbd and keel-nbd alike, except that qemu-nbd 7.2 does not
// check PSK usernames (it serves every client with a key); keel-nbd does.
TEST_F(NbdTls, TlsAuthzAllowsOnlyTheIdentityGiven) {
  struct Case {
    std::string server_object, identity;
    bool allowed;
    std::function<RunResult(const std::string& socket)> client;
    bool qemu_checks = true;
  };
  auto x509_client = [&](const std::string& socket) {
    return qemu_img_info(qemu_x509_client(creds().client, socket));
  };
  auto psk_client = [&](const std::string& socket) {
    return keel_img({"info", "--object", client_psk_object(creds().psk), nbds_unix(socket)});
  };
  const std::vector<Case> cases = {
      {x509_object(creds().server), "O=Keel Test,,CN=keel test client", true, x509_client},
      {x509_object(creds().server), "CN=keel test client,,O=Keel Test", false, x509_client},
      {psk_object(creds().psk), "alice", true, psk_client},
      {psk_object(creds().psk), "bob", false, psk_client, false},
  };
  for (const Case& c : cases) {
    const std::vector<std::string> authz{"--object", "authz-simple,id=auth0,identity=" + c.identity,
                                         "--tls-authz=auth0"};
    auto qemu = serve(NbdServerKind::Qemu, c.server_object, authz);
    auto keel = serve(NbdServerKind::Keel, c.server_object, authz);
    const RunResult q = c.client(qemu->socket()), k = c.client(keel->socket());
    EXPECT_EQ(q.status == 0, c.allowed || !c.qemu_checks) << c.identity << describe("qemu-nbd", q);
    EXPECT_EQ(k.status == 0, c.allowed) << c.identity << describe("keel-nbd", k);
  }
}

// keel-img's --object errors are qemu-img's.
TEST_F(NbdTls, ClientObjectErrorsMatchQemuImg) {
  const std::string image = t_.file("obj.raw");
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "raw", image, "1M"}).status, 0);
  const std::vector<std::vector<std::string>> cases = {
      {"--object", "tls-creds-psk,id=tls0,dir=" + creds().psk + ",endpoint=client"},
      {"--object", "tls-creds-psk,id=tls0,dir=" + creds().psk + ",endpoint=client,username=bob"},
      {"--object", client_x509_object(creds().psk)},
      {"--object", client_psk_object(creds().psk), "--object", "authz-simple,id=tls0,identity=x"},
      {"--object", "authz-simple,id=a"},
      {"--object", "authz-simple,id=a,identity=x,bogus=1"},
      {"--object", client_x509_object(creds().client, ",username=x")},
  };
  for (const auto& options : cases) {
    std::vector<std::string> args{"info"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {"-f", "raw", image});
    const RunResult q = qemu_img(args), k = keel_img(args);
    EXPECT_NE(q.status, 0) << join(args);
    EXPECT_EQ(k.status, q.status) << join(args);
    EXPECT_EQ(k.err, replace_all(q.err, "qemu-img: ", "keel-img: ")) << join(args);
  }
  // A client object loads, and an image not over NBD is opened as without it.
  const RunResult ok = keel_img({"info", "--object", client_psk_object(creds().psk), "-f", "raw", image});
  EXPECT_EQ(ok.status, 0) << ok.err;
}

}  // namespace keel::test::interop
