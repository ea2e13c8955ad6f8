// keel-img's command-line scanning, worded as qemu-img words it: getopt with
// its errors reported as "unrecognized option '-x'" or "missing argument for
// option '-o'", followed by "Try 'keel-img --help' ...".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "block/format.h"
#include "tools/common/option_scanner.h"

namespace keel::img {

// Long options only qemu-img's commands have; values above any option letter.
enum LongOptionId : int {
  kOptionOutput = 256,
  kOptionBackingChain,
  kOptionObject,
  kOptionImageOpts,
  kOptionTargetImageOpts,
  kOptionSalvage,
  kOptionTargetIsZero,
  kOptionBitmaps,
  kOptionSkipBrokenBitmaps,
};

// qemu-img's error_exit(): "keel-img: MESSAGE" and the line pointing at --help; status 1.
[[noreturn]] void usage_error(std::string_view message);

// Ends the command for a scanner result of '?' or ':'.
[[noreturn]] void bad_option(const tools::ScannedOption& option);

// A scanner over a command's words (argv[0] is the command's name, which
// getopt quotes when a word it had not started has a bad option).
tools::OptionScanner command_scanner(int argc, char** argv, std::string_view shorts,
                                     std::vector<tools::LongOption> longs);

// Adds one "-o" argument to `list`: each must be an option list on its own,
// and together they read as one, joined by commas.
void add_option_list(std::string& list, const std::string& text);

// "--output=ofmt": true for json, false for human; anything else is refused.
bool json_output(const std::optional<std::string>& output);

// Options keel-img scans so that their words parse as qemu-img's, but does
// not implement yet ("--object", "-B", ...): refused by name.
[[noreturn]] void not_supported(std::string_view option);

// The options info and check share, and their one file name.
struct ImageCommandOptions {
  std::string format;
  std::optional<std::string> output;
  bool force_share = false;
  bool image_opts = false;
  // Takes -h (help, then the tool ends), -f, -U, --output, --object and
  // --image-opts; false for any other option.
  bool take(const tools::ScannedOption& option);
  // Once scanned: the file name, with the checks qemu-img makes in its order.
  std::string one_image(const tools::OptionScanner& scanner) const;
  bool json() const { return json_output(output); }
};

// Prints keel-img's help (-h, --help, in any command, as qemu-img does).
void print_usage();

// Opens `name` as a command's image: with --image-opts the name is an option
// list ("driver=qcow2,file.filename=x"), otherwise a file name.
Task<std::unique_ptr<block::BlockNode>> img_open(const std::string& name, const block::OpenOptions& options,
                                                 bool image_opts);

}  // namespace keel::img
