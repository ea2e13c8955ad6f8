#include "nbd/server.h"

#include <algorithm>

#include "base/async/run_on.h"

namespace keel::nbd {

Task<void> Server::run() {
  for (Listener& l : listeners_) tasks_.spawn(accept_loop(&l));
  co_await tasks_.join();
}

void Server::stop() {
  stopping_ = true;
  for (Listener& l : listeners_) l.shutdown();
  for (auto& c : connections_) c->shutdown();
  slot_free_.notify_all();
}

Task<void> Server::accept_loop(Listener* listener) {
  while (!stopping_) {
    if (settings_.max_connections && connections_.size() >= settings_.max_connections) {
      co_await slot_free_.wait();
      continue;
    }
    Socket socket = co_await listener->accept();
    if (!socket || stopping_) break;
    connections_.push_back(std::make_unique<Connection>(std::move(socket), config_));
    const auto& loops = settings_.connection_loops;
    EventLoop* loop = loops.empty() ? nullptr : loops[served_ % loops.size()];
    served_++;
    tasks_.spawn(serve(connections_.back().get(), loop));
  }
}

Task<void> Server::serve(Connection* connection, EventLoop* loop) {
  if (loop)
    co_await run_on(*loop, connection->serve());
  else
    co_await connection->serve();
  connections_.remove_if([&](const std::unique_ptr<Connection>& c) { return c.get() == connection; });
  slot_free_.notify_all();
  if (!settings_.persistent && connections_.empty()) stop();
}

}  // namespace keel::nbd
