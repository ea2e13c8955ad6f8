// Option scanning with glibc's getopt_long() (getopt() when there are no long
// options), as qemu-io and qemu-img scan their command lines: options may
// come after operands, "--" ends them, "-P5" and "-P 5" both give -P its
// argument, long options may be abbreviated. Errors are either glibc's own
// messages (qemu-io) or reported back for the tool to word (qemu-img).
// getopt keeps its state in globals, so one scanner runs at a time.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct option;  // <getopt.h>, kept out of this header: it defines macros such as no_argument

namespace keel::tools {

struct LongOption {
  std::string_view name;
  bool has_argument;
  int id;  // what next() reports for it
};

// How a malformed option is reported.
enum class OptionErrors {
  Print,   // glibc prints "program: invalid option -- 'x'" and the like; next() returns '?'
  Return,  // nothing printed; next() returns '?' (unknown option) or ':' (argument missing)
};

struct ScannedOption {
  int id;  // the option letter or LongOption::id; '?' or ':' for a malformed option
  // The option's argument; for '?' and ':' in OptionErrors::Return, the word
  // getopt last consumed (argv[optind - 1]), which qemu-img quotes in its message.
  std::string argument;
};

class OptionScanner {
 public:
  // `program` prefixes error messages; `words` excludes it. `shorts` is
  // getopt's string ("P:qv": P takes an argument; a leading '+' stops at the first operand).
  OptionScanner(std::string program, std::vector<std::string> words, std::string_view shorts,
                std::vector<LongOption> longs = {}, OptionErrors errors = OptionErrors::Print);
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
  OptionErrors errors_;
  bool started_ = false;
  bool done_ = false;
};

}  // namespace keel::tools
