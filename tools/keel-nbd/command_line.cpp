#include "tools/keel-nbd/command_line.h"

#include <cstdio>

#include "base/error.h"
#include "base/units.h"
#include "base/warning.h"
#include "tools/common/option_scanner.h"
#include "tools/common/tool_main.h"

namespace keel::nbdtool {

namespace {

enum LongOnly : int {
  kObject = 256,
  kTlsCreds,
  kTlsAuthz,
  kTlsHostname,
  kImageOpts,
  kCache,
  kAio,
  kDiscard,
  kDetectZeroes,
  kFork,
  kPidFile,
  kSelinuxLabel,
  kHandshakeLimit,
  kThreads,
};

const std::vector<tools::LongOption> kLongOptions = {
    {"help", false, 'h'},           {"version", false, 'V'},
    {"bind", true, 'b'},            {"port", true, 'p'},
    {"socket", true, 'k'},          {"offset", true, 'o'},
    {"read-only", false, 'r'},      {"allocation-depth", false, 'A'},
    {"bitmap", true, 'B'},          {"connect", true, 'c'},
    {"disconnect", false, 'd'},     {"list", false, 'L'},
    {"snapshot", false, 's'},       {"load-snapshot", true, 'l'},
    {"nocache", false, 'n'},        {"cache", true, kCache},
    {"aio", true, kAio},            {"discard", true, kDiscard},
    {"detect-zeroes", true, kDetectZeroes},
    {"shared", true, 'e'},          {"format", true, 'f'},
    {"persistent", false, 't'},     {"verbose", false, 'v'},
    {"object", true, kObject},      {"export-name", true, 'x'},
    {"description", true, 'D'},     {"tls-creds", true, kTlsCreds},
    {"tls-authz", true, kTlsAuthz}, {"tls-hostname", true, kTlsHostname},
    {"image-opts", false, kImageOpts}, {"trace", true, 'T'},
    {"fork", false, kFork},         {"pid-file", true, kPidFile},
    {"selinux-label", true, kSelinuxLabel}, {"handshake-limit", true, kHandshakeLimit},
    {"threads", true, kThreads},
};

void print_help() {
  std::printf(
      "Usage: keel-nbd [OPTIONS] FILE\n"
      "Serve a disk image over NBD, command-line compatible with qemu-nbd\n"
      "\n"
      "  -h, --help                display this help and exit\n"
      "  -V, --version             output version information and exit\n"
      "\n"
      "Connection properties:\n"
      "  -p, --port=PORT           port to listen on (default `10809')\n"
      "  -b, --bind=IFACE          interface to bind to (default `0.0.0.0')\n"
      "  -k, --socket=PATH         path to the unix socket\n"
      "  -e, --shared=NUM          device can be shared by NUM clients (default '1', 0 for no limit)\n"
      "  -t, --persistent          don't exit on the last connection\n"
      "  -v, --verbose             display extra debugging information\n"
      "  -x, --export-name=NAME    expose export by name (default is empty string)\n"
      "  -D, --description=TEXT    export a human-readable description\n"
      "      --handshake-limit=N   drop clients that have not finished the handshake\n"
      "                            after N seconds (default 10, 0 for no limit)\n"
      "      --tls-creds=ID        use id of an earlier --object to provide TLS\n"
      "                            (TLS is then required of every client; with -L,\n"
      "                            the client credentials to list over TLS)\n"
      "      --tls-authz=ID        only TLS clients the authz object ID allows\n"
      "      --tls-hostname=NAME   -L: check the server's certificate against NAME\n"
      "\n"
      "Exposing part of the image:\n"
      "  -A, --allocation-depth    expose the allocation depth\n"
      "  -B, --bitmap=NAME         expose a persistent dirty bitmap\n"
      "\n"
      "General purpose options:\n"
      "  --fork                    fork off the server process and exit the parent\n"
      "                            once the server is running\n"
      "  --pid-file=PATH           store the server's process ID in the given file\n"
      "  --object type,id=ID,...   define TLS credentials: tls-creds-x509,id=ID,dir=DIR,\n"
      "                            endpoint=server|client[,verify-peer=on|off] or\n"
      "                            tls-creds-psk,id=ID,dir=DIR,endpoint=server|client\n"
      "                            [,username=NAME]; or an authorization:\n"
      "                            authz-simple,id=ID,identity=DN-OR-USERNAME\n"
      "\n"
      "Block device options:\n"
      "  -f, --format=FORMAT       set image format (raw, qcow2, ...)\n"
      "  -r, --read-only           export read-only\n"
      "  -s, --snapshot            use FILE as an external snapshot, create a temporary\n"
      "                            file with backing_file=FILE, redirect the write to\n"
      "                            the temporary one\n"
      "  -l, --load-snapshot=SNAPSHOT_PARAM\n"
      "                            load an internal snapshot inside FILE and export it\n"
      "                            as an read-only device, SNAPSHOT_PARAM format is\n"
      "                            'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
      "                            '[ID_OR_NAME]'\n"
      "  -n, --nocache             disable host cache\n"
      "      --cache=MODE          set cache mode used to access the disk image, the\n"
      "                            valid options are: 'none', 'writeback' (default),\n"
      "                            'writethrough', 'directsync' and 'unsafe'\n"
      "      --aio=MODE            set AIO mode (native, io_uring or threads)\n"
      "      --discard=MODE        set discard mode (ignore, unmap)\n"
      "      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)\n"
      "      --image-opts          treat FILE as a full set of image options\n"
      "\n"
      "      --threads=N           serve connections on N threads besides the one the\n"
      "                            image is accessed from (keel only; default 0: all\n"
      "                            on one thread, as qemu-nbd)\n"
      "\n"
      "  -L, --list                list exports available from another NBD server\n"
      "                            (at -k PATH, or -b ADDRESS and -p PORT)\n"
      "\n"
      "Not supported by keel-nbd yet (refused with a message): -o, -c, -d,\n"
      "-T, --selinux-label.\n");
}

[[noreturn]] void usage_error(const std::string& message) {
  raise(EINVAL, "{}\nTry `keel-nbd --help' for more information.", message);
}

[[noreturn]] void not_supported(const std::string& option) {
  raise(ENOTSUP, "{} is not supported by keel-nbd yet", option);
}

size_t parse_count(const std::string& text, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 0);
  if (text.empty() || *end || errno || v < 0) raise(EINVAL, "Invalid {} '{}'", what, text);
  return static_cast<size_t>(v);
}

}  // namespace

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  std::string cache = "writeback";
  bool nocache = false;
  std::vector<std::string> words(argv + 1, argv + argc);
  tools::OptionScanner scanner("keel-nbd", words, "hVb:o:p:rsnc:dvk:e:f:tl:x:T:D:AB:L", kLongOptions);
  // Options that describe the image served, which list mode has none of (qemu-nbd's "per-device settings").
  bool per_device = false;
  while (auto o = scanner.next()) {
    if (std::string_view("fxDAn").find(static_cast<char>(o->id)) != std::string_view::npos || o->id == kCache ||
        o->id == kAio || o->id == kDiscard || o->id == kDetectZeroes || o->id == kImageOpts)
      per_device = true;
    switch (o->id) {
      case 'h':
        print_help();
        throw tools::ExitStatus{0};
      case 'V':
        std::printf("keel-nbd version 0.1.0\n");
        throw tools::ExitStatus{0};
      case 'b':
        cl.bind = o->argument;
        cl.explicit_bind = true;
        break;
      case 'p': cl.port = o->argument; break;
      case 'k': cl.socket_path = o->argument; break;
      case 'r': cl.image.open.writable = false; cl.image.read_only_option = true; break;
      case 's': cl.snapshot = true; break;
      case 'n': nocache = true; break;
      case kCache: cache = o->argument; break;
      case kAio:
        if (o->argument != "threads" && o->argument != "native" && o->argument != "io_uring")
          usage_error(fmt::format("Invalid aio mode '{}'", o->argument));
        cl.image.aio = o->argument;
        break;
      case kDiscard:
        if (o->argument != "ignore" && o->argument != "off" && o->argument != "unmap" && o->argument != "on")
          usage_error(fmt::format("Invalid discard mode `{}'", o->argument));
        cl.discard_unmap = o->argument == "unmap" || o->argument == "on";
        break;
      case kDetectZeroes:
        if (o->argument == "off")
          cl.detect_zeroes = block::DetectZeroes::Off;
        else if (o->argument == "on")
          cl.detect_zeroes = block::DetectZeroes::On;
        else if (o->argument == "unmap")
          cl.detect_zeroes = block::DetectZeroes::Unmap;
        else
          raise(EINVAL, "Failed to parse detect_zeroes mode: invalid parameter value: {}", o->argument);
        // As qemu-nbd, against the --discard given so far.
        if (cl.detect_zeroes == block::DetectZeroes::Unmap && !cl.discard_unmap)
          raise(EINVAL, "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
        break;
      case 'e': cl.shared = parse_count(o->argument, "shared device number"); break;
      case 'f': cl.image.open.format = o->argument; break;
      case 't': cl.persistent = true; break;
      case 'v': break;
      case 'x': cl.export_name = o->argument; break;
      case 'D': cl.description = o->argument; break;
      case 'A': cl.allocation_depth = true; break;
      case kFork: cl.fork = true; break;
      case kPidFile: cl.pid_file = o->argument; break;
      case kImageOpts: cl.image_opts = true; break;
      case kThreads: cl.threads = parse_count(o->argument, "thread count"); break;
      case kHandshakeLimit:
        cl.handshake_limit = std::chrono::seconds(parse_count(o->argument, "handshake limit"));
        break;
      case 'o': not_supported("-o/--offset");
      case 'B': cl.bitmaps.push_back(o->argument); break;
      case 'l':
        try {
          cl.load_snapshot = block::parse_snapshot_ref(o->argument);
        } catch (const Error& e) {
          raise(e.code(), "{}\n{}: Failed in parsing snapshot param `{}'", e.message(), program_name(), o->argument);
        }
        break;
      case 'L': cl.list = true; break;
      case 'c': case 'd': not_supported("The kernel NBD client (-c/-d)");
      case kObject: cl.objects.add(o->argument); break;
      case kTlsCreds: cl.tls_creds = o->argument; break;
      case kTlsAuthz: cl.tls_authz = o->argument; break;
      case kTlsHostname: cl.tls_hostname = o->argument; break;
      case 'T': not_supported("-T/--trace");
      case kSelinuxLabel: not_supported("--selinux-label");
      default: raise(EINVAL, "Try `keel-nbd --help' for more information.");
    }
  }
  if (cl.list) {
    if (!scanner.operands().empty()) raise(EINVAL, "List mode is incompatible with a file name");
    if (per_device) raise(EINVAL, "List mode is incompatible with per-device settings");
    if (cl.fork) raise(EINVAL, "List mode is incompatible with forking");
    if (cl.tls_authz && !cl.tls_creds) raise(EINVAL, "--tls-authz is not permitted without --tls-creds");
    if (cl.tls_hostname && !cl.tls_creds) raise(EINVAL, "--tls-hostname is not permitted without --tls-creds");
    if (cl.tls_authz) raise(EINVAL, "TLS authorization is incompatible with export list");
    return cl;
  }
  if (scanner.operands().size() != 1) usage_error("Invalid number of arguments");
  cl.image_name = scanner.operands()[0];
  if (cl.tls_authz && !cl.tls_creds) raise(EINVAL, "--tls-authz is not permitted without --tls-creds");
  if (cl.tls_hostname && !cl.tls_creds) raise(EINVAL, "--tls-hostname is not permitted without --tls-creds");
  // The export list (-L) is a client of another server, the only place qemu-nbd takes a TLS host name.
  if (cl.tls_hostname) raise(EINVAL, "TLS hostname is only supported with export list");
  // A snapshot is served read-only, as by qemu-nbd.
  cl.image.open.writable = !cl.image.read_only_option && !cl.load_snapshot;
  const auto mode = block::CacheMode::parse(nocache ? "none" : cache);
  if (!mode) raise(EINVAL, "Invalid cache mode `{}'", cache);
  cl.image.open.cache = *mode;
  return cl;
}

}  // namespace keel::nbdtool
