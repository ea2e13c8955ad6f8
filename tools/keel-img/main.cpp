// keel-img: create, inspect, convert and check disk images, with qemu-img's
// command lines, output and exit statuses.
#include <cstdio>
#include <cstring>
#include <string>

#include "base/error.h"
#include "tools/common/option_scanner.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/command_line.h"
#include "tools/keel-img/commands.h"
#include "tools/keel-img/trace_option.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* synopsis;
};

constexpr Command kCommands[] = {
    {"check", keel::img::cmd_check, "check [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename"},
    {"convert", keel::img::cmd_convert,
     "convert [--image-opts] [--target-is-zero] [-U] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-o options] "
     "[-S sparse_size] [-m num_coroutines] [-W] filename [filename2 [...]] output_filename"},
    {"create", keel::img::cmd_create, "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]"},
    {"info", keel::img::cmd_info, "info [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"},
};

}  // namespace

namespace keel::img {

void print_usage() {
  std::printf("keel-img version 0.1.0\nusage: keel-img [standard options] command [command options]\n");
  std::printf("Disk image utility, command-line compatible with qemu-img\n\n");
  std::printf("    '-h', '--help'       display this help and exit\n");
  std::printf("    '-V', '--version'    output version information and exit\n");
  std::printf("    '-T', '--trace'      [[enable=]<pattern>][,events=<file>][,file=<file>]\n");
  std::printf("                         accepted for qemu-img's command lines; keel has no trace events\n\n");
  std::printf("Command syntax:\n");
  for (const Command& c : kCommands) std::printf("  %s\n", c.synopsis);
  std::printf("\n'-h' with or without a command shows this help. File names may start with 'file:' or be\n");
  std::printf("'json:{...}' option sets, as in qemu; keel has no other protocols yet.\n");
}

}  // namespace keel::img

int main(int argc, char** argv) {
  return keel::tools::run_tool("keel-img", [&]() -> int {
    using keel::img::usage_error;
    if (argc < 2) usage_error("Not enough arguments");
    keel::tools::OptionScanner options("keel-img", std::vector<std::string>(argv + 1, argv + argc), "+hVT:",
                                       {{"help", false, 'h'}, {"version", false, 'V'}, {"trace", true, 'T'}},
                                       keel::tools::OptionErrors::Return);
    while (auto o = options.next()) {
      switch (o->id) {
        case 'h': keel::img::print_usage(); return 0;
        case 'V': std::printf("keel-img version 0.1.0\n"); return 0;
        case 'T': keel::img::apply_trace_option(o->argument); break;
        default: keel::img::bad_option(*o);
      }
    }
    std::vector<std::string> words = options.operands();
    if (words.empty()) return 0;  // options only, as qemu-img allows
    std::vector<char*> command_argv;
    for (auto& w : words) command_argv.push_back(w.data());
    command_argv.push_back(nullptr);
    for (const Command& c : kCommands)
      if (words[0] == c.name) return c.run(static_cast<int>(words.size()), command_argv.data());
    usage_error(fmt::format("Command not found: {}", words[0]));
  });
}
