#include "tools/common/option_scanner.h"

#include <getopt.h>

namespace keel::tools {

OptionScanner::OptionScanner(std::string program, std::vector<std::string> words, std::string_view shorts,
                             std::vector<LongOption> longs, OptionErrors errors)
    : errors_(errors) {
  // A ':' after the optional '+' makes getopt silent and tell '?' from ':'.
  const size_t ordering = !shorts.empty() && shorts[0] == '+' ? 1 : 0;
  shorts_ = std::string(shorts.substr(0, ordering)) + (errors == OptionErrors::Return ? ":" : "") +
            std::string(shorts.substr(ordering));
  words_.reserve(words.size() + 1);
  words_.push_back(std::move(program));
  for (auto& w : words) words_.push_back(std::move(w));
  for (auto& w : words_) argv_.push_back(w.data());
  argv_.push_back(nullptr);
  long_names_.reserve(longs.size());
  for (const LongOption& o : longs) {
    long_names_.emplace_back(o.name);
    longs_.push_back(option{long_names_.back().c_str(), o.has_argument ? required_argument : no_argument, nullptr, o.id});
  }
  longs_.push_back(option{nullptr, 0, nullptr, 0});
}

OptionScanner::~OptionScanner() = default;

std::optional<ScannedOption> OptionScanner::next() {
  if (done_) return std::nullopt;
  if (!started_) {
    optind = 0;  // glibc: start over, including its permutation state
    opterr = errors_ == OptionErrors::Print ? 1 : 0;
    started_ = true;
  }
  const int argc = static_cast<int>(argv_.size()) - 1;
  // Commands have no long options and use plain getopt(), as qemu-io's do:
  // "--x" is then the invalid option '-', not an unrecognized long option.
  const int c = longs_.size() > 1 ? getopt_long(argc, argv_.data(), shorts_.c_str(), longs_.data(), nullptr)
                                  : getopt(argc, argv_.data(), shorts_.c_str());
  if (c == -1) {
    for (int i = optind; i < argc; i++) operands_.emplace_back(argv_[static_cast<size_t>(i)]);
    done_ = true;
    return std::nullopt;
  }
  if (c == '?' || c == ':') {
    if (errors_ == OptionErrors::Print) return ScannedOption{'?', {}};
    return ScannedOption{c, argv_[static_cast<size_t>(optind - 1)]};
  }
  return ScannedOption{c, optarg ? optarg : ""};
}

}  // namespace keel::tools
