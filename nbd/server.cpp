#include "nbd/server.h"

#include <algorithm>

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
    served_++;
    tasks_.spawn(serve(connections_.back().get()));
  }
}

Task<void> Server::serve(Connection* connection) {
  co_await connection->serve();
  connections_.remove_if([&](const std::unique_ptr<Connection>& c) { return c.get() == connection; });
  slot_free_.notify_all();
  if (!settings_.persistent && connections_.empty()) stop();
}

}  // namespace keel::nbd
