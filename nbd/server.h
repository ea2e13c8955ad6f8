// Server: accepts NBD clients on its listeners and serves each on its own
// Connection. Connections run on the connection loops given (in turn), or on
// the server's own loop without any; either way the exports' backends run
// their requests on the nodes' home loop. As qemu-nbd: at most `max_connections`
// clients at once (others wait in the listen backlog), and unless persistent
// the server ends when its last client leaves.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <vector>

#include "base/async/socket.h"
#include "base/async/sync.h"
#include "base/async/task.h"
#include "nbd/connection.h"

namespace keel::nbd {

struct ServerSettings {
  size_t max_connections = 1;  // 0: no limit (qemu-nbd -e 0)
  bool persistent = false;     // -t: keep serving after the last client leaves
  // Loops (of other threads) to serve connections on; they must outlive run().
  std::vector<EventLoop*> connection_loops;
};

class Server {
 public:
  Server(ServerConfig config, ServerSettings settings) : config_(std::move(config)), settings_(settings) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void add_listener(Listener listener) { listeners_.push_back(std::move(listener)); }
  // Serves until stop(), or until the last client leaves when not persistent.
  Task<void> run();
  // Stops accepting and ends every connection; run() returns once they are gone.
  void stop();

  size_t connections() const noexcept { return connections_.size(); }
  size_t served() const noexcept { return served_; }

 private:
  Task<void> accept_loop(Listener* listener);
  // Serves on `loop`, or on the server's own loop when null.
  Task<void> serve(Connection* connection, EventLoop* loop);

  ServerConfig config_;
  ServerSettings settings_;
  std::vector<Listener> listeners_;
  std::list<std::unique_ptr<Connection>> connections_;
  TaskGroup tasks_;
  WaitQueue slot_free_;
  bool stopping_ = false;
  size_t served_ = 0;
};

}  // namespace keel::nbd
