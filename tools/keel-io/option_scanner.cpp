#include "tools/keel-io/option_scanner.h"

#include <cstdio>

#include <fmt/format.h>

namespace keel::io {

OptionScanner::OptionScanner(std::string program, std::vector<std::string> words, std::string_view shorts,
                             std::vector<LongOption> longs)
    : program_(std::move(program)), words_(std::move(words)), shorts_(shorts), longs_(std::move(longs)) {}

ScannedOption OptionScanner::error(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", program_.c_str(), message.c_str());
  return {'?', {}};
}

std::optional<ScannedOption> OptionScanner::next() {
  while (letter_ == 0) {
    if (word_ >= words_.size()) return std::nullopt;
    const std::string& w = words_[word_];
    if (w == "--") {
      operands_.insert(operands_.end(), words_.begin() + static_cast<ptrdiff_t>(word_) + 1, words_.end());
      word_ = words_.size();
      return std::nullopt;
    }
    if (w.size() > 2 && w.starts_with("--") && !longs_.empty()) return next_long();
    if (w.size() > 1 && w[0] == '-') {
      letter_ = 1;
      break;
    }
    operands_.push_back(w);  // glibc permutes operands after the options
    word_++;
  }
  return next_short();
}

ScannedOption OptionScanner::next_short() {
  const std::string& w = words_[word_];
  const char c = w[letter_++];
  const bool cluster_done = letter_ >= w.size();
  const size_t at = c == ':' ? std::string::npos : shorts_.find(c);
  const bool takes_argument = at != std::string::npos && at + 1 < shorts_.size() && shorts_[at + 1] == ':';
  if (!takes_argument) {
    if (cluster_done) {
      word_++;
      letter_ = 0;
    }
    if (at == std::string::npos) return error(fmt::format("invalid option -- '{}'", c));
    return {c, {}};
  }
  // An option with an argument takes the rest of its word, or the next word.
  std::string argument = w.substr(letter_);
  word_++;
  letter_ = 0;
  if (cluster_done) {
    if (word_ >= words_.size()) return error(fmt::format("option requires an argument -- '{}'", c));
    argument = words_[word_++];
  }
  return {c, argument};
}

ScannedOption OptionScanner::next_long() {
  const std::string w = words_[word_++];
  const size_t equals = w.find('=');
  const std::string name = w.substr(2, equals == std::string::npos ? std::string::npos : equals - 2);
  const LongOption* found = nullptr;
  std::vector<const LongOption*> candidates;
  for (const LongOption& o : longs_) {
    if (o.name == name) {
      found = &o;
      break;
    }
    if (o.name.starts_with(name)) candidates.push_back(&o);
  }
  if (!found && candidates.size() == 1) found = candidates.front();
  if (!found && candidates.size() > 1) {
    std::string message = fmt::format("option '{}' is ambiguous; possibilities:", w);
    for (const LongOption* o : candidates) message += fmt::format(" '--{}'", o->name);
    return error(message);
  }
  if (!found) return error(fmt::format("unrecognized option '{}'", w));
  if (!found->has_argument) {
    if (equals != std::string::npos) return error(fmt::format("option '--{}' doesn't allow an argument", found->name));
    return {found->id, {}};
  }
  if (equals != std::string::npos) return {found->id, w.substr(equals + 1)};
  if (word_ >= words_.size()) return error(fmt::format("option '--{}' requires an argument", found->name));
  return {found->id, words_[word_++]};
}

}  // namespace keel::io
