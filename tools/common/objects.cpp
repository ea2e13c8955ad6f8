#include "tools/common/objects.h"

#include <fstream>

#include "base/error.h"
#include "block/options.h"
#include "nbd/client/tls_client.h"

namespace keel::tools {

namespace {

[[noreturn]] void unexpected(const std::string& key) { raise(EINVAL, "Parameter '{}' is unexpected", key); }

std::string required_id(const block::OptionValues& values) {
  std::string id = values.get("id").value_or("");
  if (id.empty()) raise(EINVAL, "Parameter 'id' is missing");
  return id;
}

nbd::TlsObject parse_tls(const std::string& type, const block::OptionValues& values) {
  const bool x509 = type == "tls-creds-x509";
  for (const auto& [key, value] : values.all()) {
    if (key == "id" || key == "dir" || key == "endpoint" || key == "username" || (x509 && key == "verify-peer"))
      continue;
    if (key == "priority" || key == "sanity-check" || key == "loaded" || (x509 && key == "passwordid"))
      raise(ENOTSUP, "Parameter '{}' of {} is not supported by keel", key, type);
    unexpected(key);
  }
  if (x509 && values.get("username")) unexpected("username");
  nbd::TlsObject object;
  object.id = required_id(values);
  const std::string endpoint = values.get("endpoint").value_or("client");
  if (endpoint != "client" && endpoint != "server")
    raise(EINVAL, "Parameter 'endpoint' does not accept value '{}'", endpoint);
  object.server_endpoint = endpoint == "server";
  auto& credentials = object.credentials;
  credentials.kind = x509 ? nbd::TlsCredentials::Kind::X509 : nbd::TlsCredentials::Kind::Psk;
  credentials.verify_peer = values.get_bool("verify-peer").value_or(true);
  credentials.dir = values.get("dir").value_or("");
  if (credentials.dir.empty()) raise(EINVAL, "Missing 'dir' property value");
  const auto username = values.get("username");
  if (username && object.server_endpoint) raise(EINVAL, "username should not be set when endpoint=server");
  credentials.username = username.value_or("qemu");
  return object;
}

// What qemu reads when it creates the object: a missing file is the error, whichever endpoint it is for (the
// server's own files are read when keel-nbd loads them).
void check_files(const nbd::TlsObject& object) {
  if (object.credentials.kind == nbd::TlsCredentials::Kind::X509) {
    nbd::tls_credentials_file(object.credentials.dir, "ca-cert.pem");
    return;
  }
  const std::string path = nbd::tls_credentials_file(object.credentials.dir, "keys.psk");
  if (object.server_endpoint) return;
  std::ifstream in(path);
  const std::string prefix = object.credentials.username + ":";
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(prefix)) return;
  raise(ENOENT, "Username {} not found in PSK file {}", object.credentials.username, path);
}

AuthzObject parse_authz_simple(const block::OptionValues& values) {
  for (const auto& [key, value] : values.all())
    if (key != "id" && key != "identity") unexpected(key);
  AuthzObject object{.id = required_id(values), .identity = values.get("identity").value_or("")};
  if (!values.get("identity")) raise(EINVAL, "Parameter 'identity' is missing");
  return object;
}

}  // namespace

const nbd::TlsObject* Objects::add(std::string_view text) {
  const size_t comma = text.find(',');
  std::string type(text.substr(0, comma));
  block::OptionValues values;
  if (comma != std::string_view::npos) values.parse(text.substr(comma + 1));
  if (type.starts_with("qom-type=")) type = type.substr(9);
  std::string id;
  if (type == "tls-creds-x509" || type == "tls-creds-psk") {
    nbd::TlsObject object = parse_tls(type, values);
    check_files(object);
    id = object.id;
    tls.push_back(std::move(object));
  } else if (type == "authz-simple") {
    authz.push_back(parse_authz_simple(values));
    id = authz.back().id;
  } else {
    raise(ENOTSUP, "--object {} is not supported by keel (only tls-creds-x509, tls-creds-psk and authz-simple are)",
          type);
  }
  size_t uses = 0;
  for (const auto& o : tls) uses += o.id == id;
  for (const auto& o : authz) uses += o.id == id;
  if (uses > 1) raise(EEXIST, "attempt to add duplicate property '{}' to object (type 'container')", id);
  return type.starts_with("tls-creds") ? &tls.back() : nullptr;
}

const AuthzObject* Objects::find_authz(const std::string& id) const {
  for (const AuthzObject& o : authz)
    if (o.id == id) return &o;
  return nullptr;
}

void define_client_object(std::string_view text) {
  static Objects objects;
  if (const nbd::TlsObject* tls = objects.add(text)) nbd::client::register_tls_object(*tls);
}

}  // namespace keel::tools
