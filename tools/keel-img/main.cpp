// keel-img: create, inspect, convert and check disk images, with qemu-img's
// command lines, output and exit statuses.
#include <cstdio>
#include <cstring>
#include <string>

#include "base/error.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* synopsis;
};

constexpr Command kCommands[] = {
    {"check", keel::img::cmd_check, "check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename"},
    {"convert", keel::img::cmd_convert,
     "convert [--target-is-zero] [-U] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-o options] "
     "[-S sparse_size] [-m num_coroutines] [-W] filename [filename2 [...]] output_filename"},
    {"create", keel::img::cmd_create, "create [-q] [-f fmt] [-o options] filename [size]"},
    {"info", keel::img::cmd_info, "info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"},
};

void print_usage() {
  std::printf("keel-img version 0.1.0\nusage: keel-img [standard options] command [command options]\n");
  std::printf("Disk image utility, command-line compatible with qemu-img\n\n");
  std::printf("    '-h', '--help'       display this help and exit\n");
  std::printf("    '-V', '--version'    output version information and exit\n\n");
  std::printf("Command syntax:\n");
  for (const Command& c : kCommands) std::printf("  %s\n", c.synopsis);
  std::printf("\nRun 'keel-img COMMAND --help' for the options of one command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  return keel::tools::run_tool("keel-img", [&]() -> int {
    if (argc < 2) {
      keel::raise(EINVAL, "Not enough arguments\nTry 'keel-img --help' for more information");
    }
    const std::string command = argv[1];
    if (command == "-h" || command == "--help") {
      print_usage();
      return 0;
    }
    if (command == "-V" || command == "--version") {
      std::printf("keel-img version 0.1.0\n");
      return 0;
    }
    for (const Command& c : kCommands)
      if (command == c.name) return c.run(argc - 1, argv + 1);
    keel::raise(EINVAL, "Command not found: {}", command);
  });
}
