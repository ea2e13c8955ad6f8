#include "nbd/tls_context.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "base/error.h"

namespace keel::nbd {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string openssl_error_text() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown TLS error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

TlsContext::TlsContext(const TlsCredentials& credentials, std::optional<std::string> authorized_identity)
    : authorized_identity_(std::move(authorized_identity)) {
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (!ctx_) raise(ENOMEM, "Cannot create a TLS context: {}", openssl_error_text());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  // A TLS 1.2 renegotiation would make writes wait for reads; NBD clients never ask for one.
  SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION);
  // A client that disconnects without close_notify (as GnuTLS clients may) is an end of stream, not an error.
  SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  // NBD clients make one connection per handle: session tickets would be sent for nothing.
  SSL_CTX_set_num_tickets(ctx_, 0);
  SSL_CTX_set_app_data(ctx_, this);
  try {
    if (credentials.kind == TlsCredentials::Kind::X509)
      load_x509(credentials);
    else
      load_psk(credentials.dir);
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

void TlsContext::load_x509(const TlsCredentials& credentials) {
  const std::string ca = tls_credentials_file(credentials.dir, "ca-cert.pem");
  const std::string cert = tls_credentials_file(credentials.dir, "server-cert.pem");
  const std::string key = tls_credentials_file(credentials.dir, "server-key.pem");
  if (SSL_CTX_load_verify_locations(ctx_, ca.c_str(), nullptr) != 1)
    raise(EINVAL, "Cannot load CA certificate {}: {}", ca, openssl_error_text());
  if (SSL_CTX_use_certificate_chain_file(ctx_, cert.c_str()) != 1)
    raise(EINVAL, "Cannot load certificate {}: {}", cert, openssl_error_text());
  if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1)
    raise(EINVAL, "Cannot load private key {}: {}", key, openssl_error_text());
  if (SSL_CTX_check_private_key(ctx_) != 1)
    raise(EINVAL, "Private key {} does not match certificate {}", key, cert);
  // Without verify-peer no certificate is asked for, so there is no identity to authorize.
  if (authorized_identity_ && !credentials.verify_peer)
    raise(EINVAL, "TLS authorization of x509 clients needs verify-peer=on");
  if (credentials.verify_peer) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       authorized_identity_ ? &TlsContext::check_certificate : nullptr);
    // Tells the client which CA its certificate must come from.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str())) SSL_CTX_set_client_CA_list(ctx_, names);
  }
}

void TlsContext::load_psk(const std::string& dir) {
  const std::string path = tls_credentials_file(dir, "keys.psk");
  std::ifstream in(path);
  std::string line;
  for (size_t number = 1; std::getline(in, line); number++) {
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    std::vector<uint8_t> key;
    const std::string hex = colon == std::string::npos ? "" : line.substr(colon + 1);
    for (size_t i = 0; i + 1 < hex.size(); i += 2) {
      const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
      if (hi < 0 || lo < 0) break;
      key.push_back(static_cast<uint8_t>(hi << 4 | lo));
    }
    if (colon == 0 || hex.empty() || hex.size() % 2 != 0 || key.size() * 2 != hex.size() ||
        key.size() > PSK_MAX_PSK_LEN)
      raise(EINVAL, "Invalid PSK file {} line {}: expected username:hexkey", path, number);
    psk_keys_.emplace(line.substr(0, colon), std::move(key));
  }
  if (psk_keys_.empty()) raise(EINVAL, "PSK file {} holds no keys", path);
  // TLS 1.2 PSK suites (forward-secret ones first); TLS 1.3 uses the same callback with its SHA-256 suites.
  if (SSL_CTX_set_cipher_list(ctx_, "ECDHEPSK:DHEPSK:PSK") != 1)
    raise(EINVAL, "Cannot select the PSK cipher suites: {}", openssl_error_text());
  SSL_CTX_set_psk_server_callback(ctx_, &TlsContext::find_psk);
}

unsigned int TlsContext::find_psk(SSL* ssl, const char* identity, unsigned char* psk, unsigned int max) noexcept {
  const auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!identity || (self->authorized_identity_ && *self->authorized_identity_ != identity)) return 0;
  const auto it = self->psk_keys_.find(std::string_view(identity));
  if (it == self->psk_keys_.end() || it->second.size() > max) return 0;
  std::memcpy(psk, it->second.data(), it->second.size());
  return static_cast<unsigned int>(it->second.size());
}

int TlsContext::check_certificate(int preverified, X509_STORE_CTX* store) noexcept {
  // Only the client's own certificate (depth 0), once its chain checked out, carries the identity.
  if (!preverified || X509_STORE_CTX_get_error_depth(store) != 0) return preverified;
  const auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  X509* certificate = X509_STORE_CTX_get_current_cert(store);
  BIO* text = BIO_new(BIO_s_mem());
  if (!certificate || !text) {
    BIO_free(text);
    return 0;
  }
  int authorized = 0;
  // GnuTLS's form, which qemu compares: RFC 4514 escaping, but in the certificate's order ("O=Example,CN=x").
  if (X509_NAME_print_ex(text, X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV) >= 0) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(text, &data);
    authorized = std::string_view(data, static_cast<size_t>(size)) == *self->authorized_identity_;
  }
  BIO_free(text);
  if (!authorized) X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return authorized;
}

SSL* TlsContext::new_session() const {
  SSL* ssl = SSL_new(ctx_);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (!ssl || !in || !out) {
    SSL_free(ssl);
    BIO_free(in);
    BIO_free(out);
    raise(ENOMEM, "Cannot create a TLS session: {}", openssl_error_text());
  }
  // An empty input BIO means "wait for more", not end of stream.
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(ssl, in, out);
  SSL_set_accept_state(ssl);
  return ssl;
}

}  // namespace keel::nbd
