// keel-nbd: serves a disk image over NBD, with qemu-nbd's command line and behaviour.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/async/event_loop.h"
#include "base/async/loop_thread.h"
#include "base/async/socket.h"
#include "base/async/sync.h"
#include "base/error.h"
#include "block/backend.h"
#include "block/image_options.h"
#include "block/temporary_overlay.h"
#include "nbd/server.h"
#include "tools/common/tool_main.h"
#include "tools/keel-nbd/command_line.h"
#include "tools/keel-nbd/list_mode.h"

namespace keel::nbdtool {

namespace {

// The write end of a socket pair the signal handler writes to; the loop reads the other end.
int g_signal_fd = -1;

void on_signal(int) {
  const char byte = 1;
  [[maybe_unused]] ssize_t n = write(g_signal_fd, &byte, 1);
}

// Stops the server at SIGTERM, SIGINT or SIGHUP; ends when its socket is shut down.
Task<void> stop_on_signal(Socket* signals, nbd::Server* server) {
  std::byte byte[1];
  if (co_await signals->read_some(byte) > 0) server->stop();
}

Task<void> serve_until_done(nbd::Server* server, Socket* signals) {
  TaskGroup group;
  group.spawn(stop_on_signal(signals, server));
  co_await server->run();
  signals->shutdown();
  co_await group.join();
}

// The socket systemd (or another socket activator) passed in, if any: LISTEN_PID is us and LISTEN_FDS is 1.
std::optional<int> activation_socket() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds || std::strtoll(pid, nullptr, 10) != getpid()) return std::nullopt;
  if (std::strcmp(fds, "1") != 0) raise(EINVAL, "Unexpected socket activation: LISTEN_FDS='{}', expected 1", fds);
  return 3;
}

Listener listen(const CommandLine& cl) {
  if (auto fd = activation_socket()) {
    if (cl.socket_path || cl.bind != "0.0.0.0" || cl.port != "10809")
      raise(EINVAL, "-k, -b and -p cannot be used with socket activation");
    return Listener::adopt(*fd);
  }
  if (cl.socket_path) return Listener::unix_socket(*cl.socket_path);
  return Listener::tcp(cl.bind, cl.port);
}

// --fork: the parent returns only once the child is serving (exit 0) or has failed (exit 1, its error printed).
int fork_server() {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) < 0) raise_errno(errno, "pipe");
  const pid_t pid = fork();
  if (pid < 0) raise_errno(errno, "fork");
  if (pid > 0) {
    close(ready[1]);
    char byte;
    const ssize_t n = read(ready[0], &byte, 1);
    std::_Exit(n == 1 ? 0 : 1);
  }
  close(ready[0]);
  setsid();
  return ready[1];
}

void write_pid_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f || std::fprintf(f, "%d\n", getpid()) < 0 || std::fclose(f) != 0)
    raise(errno, "Failed to write pid file '{}': {}", path, errno_text(errno));
}

// The credentials --tls-creds names, authorizing what --tls-authz allows; the server-endpoint objects are loaded
// first, as qemu creates every object.
std::shared_ptr<const nbd::TlsContext> tls_context(const CommandLine& cl) {
  std::optional<std::string> identity;
  if (cl.tls_authz) {
    const tools::AuthzObject* authz = cl.objects.find_authz(*cl.tls_authz);
    // qemu-nbd looks the object up per client and refuses each; keel-nbd refuses to start.
    if (!authz) raise(ENOENT, "No authorization object with id '{}'", *cl.tls_authz);
    identity = authz->identity;
  }
  std::vector<std::pair<const nbd::TlsObject*, std::shared_ptr<const nbd::TlsContext>>> loaded;
  for (const nbd::TlsObject& object : cl.objects.tls) {
    const bool selected = cl.tls_creds && object.id == *cl.tls_creds;
    loaded.emplace_back(&object, object.server_endpoint ? std::make_shared<nbd::TlsContext>(
                                                              object.credentials, selected ? identity : std::nullopt)
                                                        : nullptr);
  }
  if (!cl.tls_creds) return nullptr;
  for (const auto& [object, context] : loaded) {
    if (object->id != *cl.tls_creds) continue;
    if (!context) raise(EINVAL, "Failed to get TLS creds: Expected TLS credentials for a server endpoint");
    return context;
  }
  raise(ENOENT, "Failed to get TLS creds: No TLS credentials with id '{}'", *cl.tls_creds);
}

// The persistent bitmap `name` of the first node of the backing chain that has one (a -s overlay has none), as
// qemu-nbd -B looks for it. A damaged bitmap fails as qemu fails to open the image; keel reads it only now.
Task<std::shared_ptr<block::DirtyBitmap>> find_bitmap(block::BlockNode& top, const std::string& name,
                                                      const std::string& image_name) {
  for (block::BlockNode* node = &top; node; node = node->backing()) {
    std::shared_ptr<block::DirtyBitmap> bitmap;
    try {
      bitmap = co_await node->dirty_bitmap(name);
    } catch (const Error& e) {
      raise(e.code(), "Failed to blk_new_open '{}': {}", image_name, e.message());
    }
    if (!bitmap) continue;
    if (bitmap->inconsistent()) raise(EINVAL, "Bitmap '{}' is inconsistent and cannot be used", name);
    co_return bitmap;
  }
  raise(ENOENT, "Bitmap '{}' is not found", name);
}

int run(int argc, char** argv) {
  CommandLine cl = parse_command_line(argc, argv);
  if (cl.list) return list_exports(cl);
  const std::shared_ptr<const nbd::TlsContext> tls = tls_context(cl);
  const int ready_fd = cl.fork ? fork_server() : -1;

  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) raise_errno(errno, "socketpair");
  g_signal_fd = pair[1];
  Socket signals(pair[0]);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const IoBackend io = cl.image.aio == "threads" ? IoBackend::Threads : IoBackend::IoUring;
  EventLoop loop(io);
  if (cl.image_opts)
    block::apply_image_options(cl.image_name, cl.image);
  else
    cl.image.filename = cl.image_name;
  std::unique_ptr<block::BlockNode> node;
  try {
    node = loop.run(cl.snapshot ? block::open_with_temporary_overlay(cl.image) : block::open_image(cl.image));
  } catch (const Error& e) {
    raise(e.code(), "Failed to blk_new_open '{}': {}", cl.image_name, e.message());
  }
  if (cl.load_snapshot) {
    try {
      loop.run(node->load_snapshot(*cl.load_snapshot));
    } catch (const Error& e) {
      raise(e.code(), "Failed to load snapshot: {}", e.message());
    }
  }
  std::vector<std::shared_ptr<block::DirtyBitmap>> bitmaps;
  // qemu-nbd offers the bitmaps last given first.
  for (auto name = cl.bitmaps.rbegin(); name != cl.bitmaps.rend(); ++name)
    bitmaps.push_back(loop.run(find_bitmap(*node, *name, cl.image_name)));
  block::BlockBackend backend(std::move(node), {.read_only = !cl.image.open.writable, .discard = cl.discard_unmap,
                                                  .detect_zeroes = cl.detect_zeroes});
  nbd::Export exported(backend, {.name = cl.export_name,
                                 .description = cl.description,
                                 .allocation_depth = cl.allocation_depth,
                                 .multi_conn = cl.shared != 1,
                                 .bitmaps = std::move(bitmaps)});
  // --tls-creds makes TLS mandatory: a client must STARTTLS before anything but ABORT (NBD_REP_ERR_TLS_REQD).
  nbd::ServerConfig config{.exports = {&exported},
                           .negotiation = {.tls_configured = tls != nullptr, .tls_required = tls != nullptr},
                           .tls = tls,
                           .limits = {.handshake_limit = cl.handshake_limit}};
  // Connections (socket I/O, TLS, request parsing) run on their own threads; the image stays on this one.
  std::vector<std::unique_ptr<LoopThread>> connection_threads;
  std::vector<EventLoop*> connection_loops;
  for (size_t i = 0; i < cl.threads; i++) {
    connection_threads.push_back(std::make_unique<LoopThread>(io));
    connection_loops.push_back(&connection_threads.back()->loop());
  }
  nbd::Server server(config, {.max_connections = cl.shared, .persistent = cl.persistent,
                              .connection_loops = connection_loops});
  server.add_listener(listen(cl));
  if (cl.pid_file) write_pid_file(*cl.pid_file);
  if (ready_fd >= 0) {
    const char byte = 1;
    [[maybe_unused]] ssize_t n = write(ready_fd, &byte, 1);
    close(ready_fd);
  }
  loop.run(serve_until_done(&server, &signals));
  loop.run(backend.close());
  if (cl.socket_path) unlink(cl.socket_path->c_str());
  if (cl.pid_file) unlink(cl.pid_file->c_str());
  return 0;
}

}  // namespace

}  // namespace keel::nbdtool

int main(int argc, char** argv) {
  return keel::tools::run_tool("keel-nbd", [&] { return keel::nbdtool::run(argc, argv); });
}
