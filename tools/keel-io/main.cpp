// keel-io: drives an image one request at a time, with qemu-io's command
// line, commands, output and exit statuses.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "tools/common/objects.h"
#include "tools/common/tool_main.h"
#include "tools/keel-io/commands.h"
#include "tools/keel-io/line_reader.h"
#include "tools/keel-io/open_flags.h"
#include "tools/common/option_scanner.h"
#include "tools/keel-io/session.h"

namespace keel::io {

namespace {

constexpr int kObject = 256;
constexpr int kImageOpts = 257;

// In the order qemu-io lists them, which decides how ambiguous abbreviations read.
const std::vector<tools::LongOption> kLongOptions = {
    {"help", false, 'h'},        {"version", false, 'V'},     {"cmd", true, 'c'},        {"format", true, 'f'},
    {"read-only", false, 'r'},   {"snapshot", false, 's'},    {"nocache", false, 'n'},   {"copy-on-read", false, 'C'},
    {"misalign", false, 'm'},    {"native-aio", false, 'k'},  {"discard", true, 'd'},    {"cache", true, 't'},
    {"trace", true, 'T'},        {"object", true, kObject},   {"image-opts", false, kImageOpts},
    {"force-share", false, 'U'}, {"aio", true, 'i'},
};

void print_usage() {
  std::printf(
      "Usage: keel-io [OPTIONS]... [-c STRING]... [file]\n"
      "Disk image exerciser, command-line compatible with qemu-io\n"
      "\n"
      "  --image-opts         treat file as an option string (driver=FMT,file.filename=PATH,...)\n"
      "  -c, --cmd STRING     execute command with its arguments\n"
      "                       from the given string\n"
      "  -f, --format FMT     specifies the block driver to use\n"
      "  -r, --read-only      export read-only\n"
      "  -s, --snapshot       use snapshot file\n"
      "  -n, --nocache        disable host cache, short for -t none\n"
      "  -C, --copy-on-read   enable copy-on-read (no effect: keel does not copy on read)\n"
      "  -m, --misalign       misalign allocations for O_DIRECT\n"
      "  -k, --native-aio     use kernel AIO implementation, short for -i native\n"
      "  -i, --aio=MODE       use AIO mode (threads, native or io_uring)\n"
      "  -t, --cache=MODE     use the given cache mode for the image\n"
      "  -d, --discard=MODE   use the given discard mode for the image\n"
      "  -U, --force-share    force shared permissions\n"
      "  -h, --help           display this help and exit\n"
      "  -V, --version        output version information and exit\n"
      "\n"
      "See 'keel-io -c help' for information on available commands.\n");
}

int fail_usage() {
  print_usage();
  return 1;
}

// Runs the -c commands, or the interactive loop; false if any command failed.
bool run_commands(Session& session, const std::vector<std::string>& commands) {
  bool ok = true;
  if (!commands.empty()) {
    for (const std::string& c : commands) {
      if (session.quit_requested) break;
      ok &= run_command_line(session, c);
    }
    return ok;
  }
  LineReader reader("keel-io> ");
  while (!session.quit_requested) {
    const auto line = reader.next();
    if (!line) break;
    ok &= run_command_line(session, *line);
    std::fflush(stdout);
  }
  return ok;
}

int run(int argc, char** argv) {
  // A reader that goes away must not kill the tool mid-write, as in qemu-io.
  std::signal(SIGPIPE, SIG_IGN);
  tools::OptionScanner options("keel-io", std::vector<std::string>(argv + 1, argv + argc), "hVc:d:f:rsnCmki:t:T:U", kLongOptions);
  OpenSettings settings = default_open_settings();
  std::vector<std::string> commands;
  bool misalign = false, image_opts = false;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'h': print_usage(); return 0;
      case 'V': std::printf("keel-io version 0.1.0\n"); return 0;
      case 'c': commands.push_back(o->argument); break;
      case 'f': settings.image.open.format = o->argument; break;
      case 'm': misalign = true; break;
      case 'T': raise(ENOTSUP, "tracing (-T) is not supported");
      case kObject: tools::define_client_object(o->argument); break;
      case kImageOpts: image_opts = true; break;
      case '?': return fail_usage();
      default:
        if (apply_open_flag(settings, o->id, o->argument) == FlagResult::Invalid) return 1;
    }
  }
  const auto& operands = options.operands();
  if (operands.size() > 1) return fail_usage();
  if (image_opts && settings.image.open.format) raise(EINVAL, "--image-opts and -f are mutually exclusive");

  Session session(misalign);
  if (operands.size() == 1) {
    if (image_opts) {
      block::apply_image_options(operands[0], settings.image);
    } else {
      settings.name = settings.image.filename = operands[0];
      settings.image.filename_is_name = true;
    }
    if (!session.open(settings)) return 1;
  }
  const bool ok = run_commands(session, commands);
  session.close();
  return ok ? 0 : 1;
}

}  // namespace

}  // namespace keel::io

int main(int argc, char** argv) {
  return keel::tools::run_tool("keel-io", [&] { return keel::io::run(argc, argv); });
}
