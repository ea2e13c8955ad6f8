#include "block/options.h"

#include <algorithm>
#include <charconv>

#include "base/error.h"
#include "base/units.h"

namespace keel::block {

void check_option_list(std::string_view text) {
  // An item is missing at the start, or at the end: a last comma that is not
  // half of an escaped ",," (an even run of trailing commas is all escapes).
  const size_t kept = text.find_last_not_of(',');
  const size_t trailing = text.size() - (kept == std::string_view::npos ? 0 : kept + 1);
  if (text.empty() || text.front() == ',' || trailing % 2 != 0) raise(EINVAL, "Invalid option list: {}", text);
}

void OptionValues::parse(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t name_end = std::min(text.find_first_of("=,", i), text.size());
    std::string key(text.substr(i, name_end - i));
    i = name_end;
    if (i < text.size() && text[i] == '=') {
      std::string value;
      for (i++; i < text.size(); i++) {
        if (text[i] == ',') {
          if (i + 1 >= text.size() || text[i + 1] != ',') break;
          i++;  // ",," is a literal comma
        }
        value.push_back(text[i]);
      }
      set(key, std::move(value));
    } else if (key == "help" || key == "?") {
      help_requested_ = true;
    } else if (key.starts_with("no")) {
      set(key.substr(2), "off");  // qemu's short form of a boolean: "noX" is X=off
    } else if (!key.empty()) {
      set(key, "on");  // "X" is X=on
    }
    if (i < text.size()) i++;  // the comma ending the item
  }
}

void OptionValues::set(const std::string& key, std::string value) {
  given_.emplace_back(key, value);
  values_[key] = std::move(value);
}

std::optional<std::string> OptionValues::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::optional<bool> OptionValues::get_bool(const std::string& key) const {
  auto v = get(key);
  if (!v) return std::nullopt;
  if (*v == "on" || *v == "yes" || *v == "true" || *v == "y") return true;
  if (*v == "off" || *v == "no" || *v == "false" || *v == "n") return false;
  raise(EINVAL, "Parameter '{}' expects 'on' or 'off'", key);
}

std::optional<uint64_t> OptionValues::get_size(const std::string& key) const {
  auto v = get(key);
  if (!v) return std::nullopt;
  const SizeScan size = scan_size(*v);
  if (size.out_of_range) raise(ERANGE, "Value '{}' is out of range for parameter '{}'", *v, key);
  if (!size.value)
    raise(EINVAL,
          "Parameter '{}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, "
          "mega-, giga-, tera-, peta-\nand exabytes, respectively.",
          key);
  return size.value;
}

std::optional<uint64_t> OptionValues::get_number(const std::string& key) const {
  auto v = get(key);
  if (!v) return std::nullopt;
  uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || ptr != v->data() + v->size() || v->empty())
    raise(EINVAL, "Parameter '{}' expects a number", key);
  return n;
}

void OptionValues::validate(const std::vector<OptionSpec>& specs) const {
  for (const auto& [key, value] : given_) {
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == key) spec = &s;
    if (!spec) raise(EINVAL, "Invalid parameter '{}'", key);
    OptionValues one;  // this value alone, through the typed getters
    one.values_[key] = value;
    switch (spec->type) {
      case OptionType::Bool:
        one.get_bool(key);
        break;
      case OptionType::Size:
        one.get_size(key);
        break;
      case OptionType::Number:
        one.get_number(key);
        break;
      case OptionType::String:
        break;
    }
  }
}

std::string option_display_value(const OptionSpec& spec, const std::string& value) {
  if (spec.type == OptionType::Size) {
    if (auto s = parse_size(value)) return std::to_string(*s);
  }
  return value;
}

}  // namespace keel::block
