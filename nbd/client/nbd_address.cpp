#include "nbd/client/nbd_address.h"

#include <optional>
#include <string_view>

#include "base/error.h"

namespace keel::nbd::client {

namespace {

constexpr std::string_view kDefaultPort = "10809";

[[noreturn]] void invalid_url() { raise(EINVAL, "No valid URL specified"); }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 percent-decoding; a malformed escape makes the URI invalid.
std::string percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) invalid_url();
    const int hi = hex_digit(text[i + 1]), lo = hex_digit(text[i + 2]);
    if (hi < 0 || lo < 0) invalid_url();
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// "host", "host:port", "[v6]" or "[v6]:port"; nullopt when it is none of them.
struct HostPort {
  std::string host, port;
};
std::optional<HostPort> split_host_port(std::string_view text) {
  HostPort hp;
  size_t after_host;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    hp.host = std::string(text.substr(1, close - 1));
    after_host = close + 1;
  } else {
    after_host = std::min(text.find(':'), text.size());
    hp.host = std::string(text.substr(0, after_host));
  }
  if (after_host < text.size()) {
    if (text[after_host] != ':') return std::nullopt;
    hp.port = std::string(text.substr(after_host + 1));
  }
  return hp;
}

NbdAddress parse_uri(std::string_view scheme, std::string_view rest) {
  NbdAddress address;
  address.is_unix = scheme == "nbd+unix";
  if (rest.find('#') != std::string_view::npos) invalid_url();
  const size_t query_at = rest.find('?');
  const std::string_view query = query_at == std::string_view::npos ? "" : rest.substr(query_at + 1);
  const std::string_view before_query = rest.substr(0, query_at);
  const size_t path_at = before_query.find('/');
  const std::string_view authority = before_query.substr(0, path_at);
  const std::string_view path = path_at == std::string_view::npos ? "" : before_query.substr(path_at + 1);
  address.export_name = percent_decode(path);
  if (authority.find('@') != std::string_view::npos) invalid_url();
  if (address.is_unix) {
    // Only the socket: no host, and one query parameter.
    if (!authority.empty() || !query.starts_with("socket=") || query.find('&') != std::string_view::npos)
      invalid_url();
    address.socket = percent_decode(query.substr(7));
    return address;
  }
  const auto hp = split_host_port(authority);
  if (!query.empty() || !hp || hp->host.empty()) invalid_url();
  address.host = percent_decode(hp->host);
  address.port = hp->port.empty() ? std::string(kDefaultPort) : hp->port;
  return address;
}

// "nbd:unix:PATH[:exportname=X]", "nbd:HOST:PORT[:exportname=X]".
NbdAddress parse_legacy(std::string_view rest) {
  NbdAddress address;
  constexpr std::string_view kExport = ":exportname=";
  const size_t export_at = rest.find(kExport);
  if (export_at != std::string_view::npos) {
    address.export_name = std::string(rest.substr(export_at + kExport.size()));
    rest = rest.substr(0, export_at);
  }
  if (rest.empty()) raise(EINVAL, "NBD server address missing");
  if (rest.starts_with("unix:")) {
    address.is_unix = true;
    address.socket = std::string(rest.substr(5));
    return address;
  }
  const auto hp = split_host_port(rest);
  if (!hp || hp->port.empty()) raise(EINVAL, "error parsing address '{}'", rest);
  address.host = hp->host;
  address.port = hp->port;
  return address;
}

}  // namespace

std::string NbdAddress::canonical_name() const {
  const std::string path = export_name.empty() ? "" : "/" + export_name;
  if (is_unix) return "nbd+unix://" + path + "?socket=" + socket;
  return "nbd://" + host + ":" + port + path;
}

NbdAddress parse_nbd_address(const std::string& name) {
  const size_t colon = name.find(':');
  const std::string_view scheme = std::string_view(name).substr(0, colon);
  const std::string_view rest = std::string_view(name).substr(colon + 1);
  if (scheme.starts_with("nbds"))
    raise(ENOTSUP, "TLS connections to NBD servers ('{}') are not supported by keel yet", scheme);
  if (rest.starts_with("//")) return parse_uri(scheme, rest.substr(2));
  if (scheme == "nbd") return parse_legacy(rest);
  invalid_url();
}

}  // namespace keel::nbd::client
