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

// The query of a URI: "socket=PATH" (Unix only, and required there) and, for TLS, "tls-creds=ID".
void parse_query(std::string_view query, NbdAddress& address) {
  bool has_socket = false;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
    if (address.is_unix && item.starts_with("socket=") && !has_socket) {
      address.socket = percent_decode(item.substr(7));
      has_socket = true;
    } else if (address.tls && item.starts_with("tls-creds=") && !address.tls_creds) {
      address.tls_creds = percent_decode(item.substr(10));
    } else {
      invalid_url();
    }
  }
  if (address.is_unix && !has_socket) invalid_url();
}

NbdAddress parse_uri(std::string_view scheme, std::string_view rest) {
  NbdAddress address;
  address.tls = scheme.starts_with("nbds");
  address.is_unix = scheme.ends_with("+unix");
  if (rest.find('#') != std::string_view::npos) invalid_url();
  const size_t query_at = rest.find('?');
  const std::string_view query = query_at == std::string_view::npos ? "" : rest.substr(query_at + 1);
  const std::string_view before_query = rest.substr(0, query_at);
  const size_t path_at = before_query.find('/');
  const std::string_view authority = before_query.substr(0, path_at);
  const std::string_view path = path_at == std::string_view::npos ? "" : before_query.substr(path_at + 1);
  address.export_name = percent_decode(path);
  if (authority.find('@') != std::string_view::npos) invalid_url();
  parse_query(query, address);
  if (address.is_unix) {
    if (!authority.empty()) invalid_url();  // only the socket names the server
    return address;
  }
  const auto hp = split_host_port(authority);
  if (!hp || hp->host.empty()) invalid_url();
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
  const std::string scheme = tls ? "nbds" : "nbd";
  if (is_unix) return scheme + "+unix://" + path + "?socket=" + socket;
  return scheme + "://" + host + ":" + port + path;
}

NbdAddress parse_nbd_address(const std::string& name) {
  const size_t colon = name.find(':');
  const std::string_view scheme = std::string_view(name).substr(0, colon);
  const std::string_view rest = std::string_view(name).substr(colon + 1);
  if (rest.starts_with("//")) return parse_uri(scheme, rest.substr(2));
  if (scheme == "nbd") return parse_legacy(rest);
  invalid_url();
}

}  // namespace keel::nbd::client
