// Option scanning for keel-io's command line (glibc's getopt_long()) and for
// the words of each command (getopt()), as qemu-io scans them: options may
// come after operands, "--" ends them, "-P5" and "-P 5" both give -P its
// argument, long options may be abbreviated, and errors are glibc's own
// messages. getopt keeps its state in globals, so one scanner runs at a time.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct option;  // <getopt.h>, kept out of this header: it defines macros such as no_argument

namespace keel::io {

struct LongOption {
  std::string_view name;
  bool has_argument;
  int id;  // what next() reports for it
};

struct ScannedOption {
  int id;  // the option letter or LongOption::id; '?' after an error was printed
  std::string argument;
};

class OptionScanner {
 public:
  // `program` prefixes error messages; `words` excludes it. `shorts` is
  // getopt's string ("P:qv": P takes an argument).
  OptionScanner(std::string program, std::vector<std::string> words, std::string_view shorts, std::vector<LongOption> longs = {});
  ~OptionScanner();
  OptionScanner(const OptionScanner&) = delete;
  OptionScanner& operator=(const OptionScanner&) = delete;

  // The next option, or nullopt once only operands remain.
  std::optional<ScannedOption> next();
  // The operands in order; complete once next() has returned nullopt.
  const std::vector<std::string>& operands() const noexcept { return operands_; }

 private:
  std::vector<std::string> words_;  // argv's storage: the program, then the words
  std::vector<char*> argv_;         // getopt permutes this array, never the strings
  std::string shorts_;
  std::vector<std::string> long_names_;
  std::vector<::option> longs_;
  std::vector<std::string> operands_;
  bool started_ = false;
  bool done_ = false;
};

}  // namespace keel::io
