#include "tools/keel-io/line_reader.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <editline/readline.h>

namespace keel::io {

namespace {
constexpr int kMaxLine = 1024;  // qemu-io's fgets() buffer
}

LineReader::LineReader(std::string prompt) : prompt_(std::move(prompt)), terminal_(isatty(STDIN_FILENO)) {}

std::optional<std::string> LineReader::next() {
  if (terminal_) {
    char* line = readline(prompt_.c_str());
    if (!line) return std::nullopt;
    std::string text(line);
    std::free(line);
    if (!text.empty()) add_history(text.c_str());
    return text;
  }
  std::fputs(prompt_.c_str(), stdout);
  std::fflush(stdout);
  char buffer[kMaxLine];
  if (!std::fgets(buffer, sizeof buffer, stdin)) return std::nullopt;
  std::string text(buffer);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

}  // namespace keel::io
