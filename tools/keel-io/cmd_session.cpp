// open, close, reopen, help, quit, sleep: the session rather than its data.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/async/thread_pool.h"
#include "base/error.h"
#include "block/options.h"
#include "tools/common/tool_main.h"
#include "tools/keel-io/commands.h"
#include "tools/keel-io/open_flags.h"
#include "tools/common/option_scanner.h"

namespace keel::io {

namespace {

bool open_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "snCro:kt:d:Ui:");
  OpenSettings settings = default_open_settings();
  while (auto o = options.next()) {
    switch (apply_open_flag(settings, o->id, o->argument)) {
      case FlagResult::Applied: break;
      case FlagResult::Invalid: return false;
      case FlagResult::NotAnOpenFlag: return print_usage(kOpen);
    }
  }
  const auto& operands = options.operands();
  if (operands.size() > 1) return print_usage(kOpen);
  if (operands.size() == 1) {
    settings.name = settings.image.filename = operands[0];
    settings.image.filename_is_name = true;
  }
  return session.open(settings);
}

bool close_run(Session& session, const Words&) {
  session.close();
  return true;
}

// Reopening closes the image (writing back its metadata) and opens it again
// with the new settings; if that fails, the old settings are restored.
bool reopen_run(Session& session, const Words& words) {
  tools::OptionScanner options(words[0], arguments(words), "c:o:rw");
  OpenSettings settings = session.settings();
  bool mode_given = false;
  while (auto o = options.next()) {
    switch (o->id) {
      case 'c':
        try {
          settings.image.open.cache = tools::parse_cache_mode(o->argument);
        } catch (const Error& e) {
          tools::print_error(e.message());
          return false;
        }
        break;
      case 'o': {
        block::OptionValues values;
        try {
          values.parse(o->argument);
        } catch (const Error& e) {
          tools::print_error(e.message());
          return false;
        }
        // keel's drivers take no runtime options; only the cache can change.
        for (const auto& [key, value] : values.all()) {
          if (key != "cache.direct" && key != "cache.no-flush") {
            tools::print_error(fmt::format("Cannot change the option '{}'", key));
            return false;
          }
        }
        block::apply_image_options(o->argument, settings.image);
        break;
      }
      case 'r':
      case 'w':
        if (mode_given) {
          tools::print_error("Only one -r/-w option may be given");
          return false;
        }
        mode_given = true;
        settings.image.open.writable = o->id == 'w';
        break;
      default: return print_usage(kReopen);
    }
  }
  if (!options.operands().empty()) return print_usage(kReopen);
  return session.reopen(settings);
}

void print_oneline(std::string_view name, const Command& c) {
  std::printf("%.*s ", static_cast<int>(name.size()), name.data());
  if (c.args) std::printf("%.*s ", static_cast<int>(c.args->size()), c.args->data());
  std::printf("-- %.*s\n", static_cast<int>(c.oneline.size()), c.oneline.data());
}

bool help_run(Session&, const Words& words) {
  if (words.size() == 1) {
    for (const Command* c : all_commands()) print_oneline(c->name, *c);
    std::printf("\nUse 'help commandname' for extended help.\n");
    return true;
  }
  const Command* c = find_command(words[1]);
  if (!c) {
    std::printf("command %s not found\n", words[1].c_str());
    return false;
  }
  print_oneline(words[1], *c);
  std::fputs(std::string(c->help).c_str(), stdout);
  return true;
}

bool quit_run(Session& session, const Words&) {
  session.quit_requested = true;
  return true;
}

bool sleep_run(Session& session, const Words& words) {
  char* end = nullptr;
  const long ms = std::strtol(words[1].c_str(), &end, 0);
  if (ms < 0 || *end != '\0') {
    std::printf("%s is not a valid number\n", words[1].c_str());
    return false;
  }
  // The wait runs on a worker so that aio requests progress meanwhile.
  auto wait = [&]() -> Task<void> {
    co_await session.loop().pool().run([ms] { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); });
  };
  session.loop().run(wait());
  return true;
}

}  // namespace

const Command kOpen = {
    .name = "open",
    .altname = "o",
    .run = open_run,
    .argmin = 1,
    .argmax = -1,
    .needs_image = false,
    .args = "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    .oneline = "open the file specified by path",
    .help = "\n"
            " Opens an image for the other commands; one image is open at a time.\n"
            "\n"
            " Example:\n"
            " 'open -n -o driver=raw /tmp/data' - opens a raw image read-write, without host cache\n"
            "\n"
            " -r, -- open the image read-only\n"
            " -s, -- use snapshot file (writes go to a temporary overlay)\n"
            " -C, -- copy-on-read (no effect: keel does not copy on read)\n"
            " -n, -- bypass the host cache, short for -t none\n"
            " -U, -- open even if another process uses the image (read-only)\n"
            " -k, -- kernel asynchronous I/O, short for -i native\n"
            " -i, -- I/O backend: threads, native or io_uring\n"
            " -t, -- cache mode: none, writeback, writethrough, directsync, unsafe\n"
            " -d, -- discard mode: unmap (on) or ignore (off)\n"
            " -o, -- options: driver=FMT, file.filename=PATH, cache.direct=on, ...\n",
};

const Command kClose = {
    .name = "close",
    .altname = "c",
    .run = close_run,
    .oneline = "close the current open file",
};

const Command kReopen = {
    .name = "reopen",
    .run = reopen_run,
    .argmin = 0,
    .argmax = -1,
    .args = "[(-r|-w)] [-c cache] [-o options]",
    .oneline = "reopens an image with new options",
    .help = "\n"
            " Opens the open image again with other settings.\n"
            "\n"
            " Example:\n"
            " 'reopen -r -c none' - reopens the image read-only, without host cache\n"
            "\n"
            " -r, -- reopen the image read-only\n"
            " -w, -- reopen the image read-write\n"
            " -c, -- the new cache mode\n"
            " -o, -- new options: cache.direct, cache.no-flush\n"
            "\n",
};

const Command kHelp = {
    .name = "help",
    .altname = "?",
    .run = help_run,
    .argmin = 0,
    .argmax = 1,
    .global = true,
    .args = "[command]",
    .oneline = "help for one or all commands",
};

const Command kQuit = {
    .name = "quit",
    .altname = "q",
    .run = quit_run,
    .argmin = -1,
    .argmax = -1,
    .global = true,
    .oneline = "exit the program",
};

const Command kSleep = {
    .name = "sleep",
    .run = sleep_run,
    .argmin = 1,
    .argmax = 1,
    .needs_image = false,
    .oneline = "waits for the given value in milliseconds",
};

}  // namespace keel::io
