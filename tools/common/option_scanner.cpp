#include "tools/keel-io/option_scanner.h"

#include <getopt.h>

namespace keel::io {

OptionScanner::OptionScanner(std::string program, std::vector<std::string> words, std::string_view shorts,
                             std::vector<LongOption> longs)
    : shorts_(shorts) {
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
    opterr = 1;  // glibc prints "program: invalid option -- 'x'" and the like
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
  if (c == '?' || c == ':') return ScannedOption{'?', {}};
  return ScannedOption{c, optarg ? optarg : ""};
}

}  // namespace keel::io
