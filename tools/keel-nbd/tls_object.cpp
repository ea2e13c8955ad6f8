#include "tools/keel-nbd/tls_object.h"

#include "base/error.h"
#include "block/options.h"

namespace keel::nbdtool {

TlsObject parse_tls_object(std::string_view text) {
  const size_t comma = text.find(',');
  std::string type(text.substr(0, comma));
  block::OptionValues values;
  if (comma != std::string_view::npos) values.parse(text.substr(comma + 1));
  if (type.starts_with("qom-type=")) type = type.substr(9);
  const bool x509 = type == "tls-creds-x509";
  if (!x509 && type != "tls-creds-psk")
    raise(ENOTSUP, "--object {} is not supported by keel-nbd (only tls-creds-x509 and tls-creds-psk are)", type);
  for (const auto& [key, value] : values.all()) {
    if (key == "id" || key == "dir" || key == "endpoint" || (x509 && key == "verify-peer")) continue;
    if (key == "priority" || key == "sanity-check" || key == "loaded" || key == "username" ||
        (x509 && key == "passwordid"))
      raise(ENOTSUP, "Parameter '{}' of {} is not supported by keel-nbd", key, type);
    raise(EINVAL, "Parameter '{}' is unexpected", key);
  }
  TlsObject object;
  object.id = values.get("id").value_or("");
  if (object.id.empty()) raise(EINVAL, "Parameter 'id' is missing");
  const std::string endpoint = values.get("endpoint").value_or("client");
  if (endpoint != "client" && endpoint != "server")
    raise(EINVAL, "Parameter 'endpoint' does not accept value '{}'", endpoint);
  object.server_endpoint = endpoint == "server";
  object.credentials.kind = x509 ? nbd::TlsCredentials::Kind::X509 : nbd::TlsCredentials::Kind::Psk;
  object.credentials.verify_peer = values.get_bool("verify-peer").value_or(true);
  object.credentials.dir = values.get("dir").value_or("");
  if (object.credentials.dir.empty()) raise(EINVAL, "Missing 'dir' property value");
  return object;
}

}  // namespace keel::nbdtool
