// The lines of an interactive session. On a terminal, libedit reads them
// with the prompt, line editing and history; otherwise they are read as
// qemu-io reads a pipe: the prompt is printed before each line, and a line
// is at most 1023 bytes (a longer one continues as the next line).
#pragma once

#include <optional>
#include <string>

namespace keel::io {

class LineReader {
 public:
  explicit LineReader(std::string prompt);
  // The next line without its newline; nullopt at the end of input.
  std::optional<std::string> next();

 private:
  std::string prompt_;
  bool terminal_;
};

}  // namespace keel::io
