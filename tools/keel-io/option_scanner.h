// Option scanning with the rules and messages of glibc's getopt() and
// getopt_long(), which qemu-io uses for its command line and for the words
// of each command: options may come after operands, "--" ends them, "-P5"
// and "-P 5" both give -P its argument, long options may be abbreviated.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

  // The next option, or nullopt once only operands remain. Errors are
  // printed to stderr as glibc prints them.
  std::optional<ScannedOption> next();
  // The operands in order; complete once next() has returned nullopt.
  const std::vector<std::string>& operands() const noexcept { return operands_; }

 private:
  ScannedOption next_short();
  ScannedOption next_long();
  ScannedOption error(const std::string& message);

  std::string program_;
  std::vector<std::string> words_;
  std::string shorts_;
  std::vector<LongOption> longs_;
  std::vector<std::string> operands_;
  size_t word_ = 0;
  size_t letter_ = 0;  // inside a cluster of short options ("-qv"), 0 when between words
};

}  // namespace keel::io
