// The command table and the dispatch of one command line, with qemu-io's
// checks before a command runs: an open image, the argument count, and write
// permission.
#include <cstdio>

#include "tools/common/tool_main.h"
#include "tools/keel-io/commands.h"

namespace keel::io {

namespace {

constexpr const Command* kCommands[] = {
    &kAioFlush, &kAioRead, &kAioWrite, &kAlloc,  &kClose, &kDiscard, &kFlush, &kHelp,     &kInfo,    &kLength,
    &kMap,      &kOpen,    &kQuit,     &kRead,   &kReadv, &kReopen,  &kSleep, &kTruncate, &kWrite,   &kWritev,
};

// qemu-io splits at single spaces only; empty words are dropped.
Words split_words(std::string_view line) {
  Words words;
  for (size_t pos = 0; pos <= line.size();) {
    const size_t end = std::min(line.find(' ', pos), line.size());
    if (end > pos) words.emplace_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return words;
}

bool argument_count_ok(const Command& c, const Words& words) {
  const int given = static_cast<int>(words.size()) - 1;
  if (given >= c.argmin && (c.argmax == -1 || given <= c.argmax)) return true;
  const char* name = words[0].c_str();
  if (c.argmax == -1)
    std::fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n", given, name, c.argmin);
  else if (c.argmin == c.argmax)
    std::fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", given, name, c.argmin);
  else
    std::fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n", given, name, c.argmin, c.argmax);
  return false;
}

}  // namespace

std::span<const Command* const> all_commands() { return kCommands; }

const Command* find_command(std::string_view name) {
  for (const Command* c : kCommands)
    if (c->name == name || (!c->altname.empty() && c->altname == name)) return c;
  return nullptr;
}

bool run_command_line(Session& session, std::string_view line) {
  const Words words = split_words(line);
  if (words.empty()) return true;
  const Command* command = find_command(words[0]);
  if (!command) {
    std::fprintf(stderr, "command \"%s\" not found\n", words[0].c_str());
    return false;
  }
  if (!command->global && command->needs_image && !session.backend()) {
    std::fprintf(stderr, "no file open, try 'help open'\n");
    return false;
  }
  if (!argument_count_ok(*command, words)) return false;
  if (command->writes && session.backend() && !session.backend()->writable()) {
    tools::print_error("Block node is read-only");
    return false;
  }
  return command->run(session, words);
}

}  // namespace keel::io
