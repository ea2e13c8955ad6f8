// keel-nbd's command line, qemu-nbd's options, parsed into what the server needs.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "block/backend.h"
#include "block/image_options.h"
#include "block/snapshot_ref.h"
#include "tools/common/objects.h"

namespace keel::nbdtool {

struct CommandLine {
  block::ImageOptions image;
  std::string image_name;  // FILE as given
  bool image_opts = false;
  bool snapshot = false;  // -s
  bool discard_unmap = false;
  block::DetectZeroes detect_zeroes = block::DetectZeroes::Off;

  std::string export_name;
  std::string description;
  bool allocation_depth = false;
  std::vector<std::string> bitmaps;          // -B, in command line order
  std::optional<block::SnapshotRef> load_snapshot;  // -l

  std::optional<std::string> socket_path;  // -k
  std::string bind = "0.0.0.0";
  std::string port = "10809";
  size_t shared = 1;
  bool persistent = false;
  bool fork = false;
  std::optional<std::string> pid_file;
  std::chrono::milliseconds handshake_limit{10000};
  size_t threads = 0;  // --threads: connection threads beside the image's (keel's own option)

  bool list = false;  // -L: list another server's exports instead of serving
  bool explicit_bind = false;
  tools::Objects objects;                   // --object
  std::optional<std::string> tls_creds;     // the id of the object that makes TLS mandatory (or, with -L, used)
  std::optional<std::string> tls_authz;     // the id of the authz object a TLS client must satisfy
  std::optional<std::string> tls_hostname;  // -L: the name the server's certificate is checked against
};

// Parses argv; prints --help or --version and throws tools::ExitStatus(0) for those, raises keel::Error
// (qemu-nbd's wording) for a bad command line.
CommandLine parse_command_line(int argc, char** argv);

}  // namespace keel::nbdtool
