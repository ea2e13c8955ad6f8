#include "block/options.h"

#include <charconv>

#include "base/error.h"
#include "base/units.h"

namespace keel::block {

void OptionValues::parse(std::string_view text) {
  std::string key, value;
  bool in_value = false;
  auto finish = [&] {
    if (key.empty() && !in_value) return;
    if (key.empty()) raise(EINVAL, "Invalid option list: empty parameter name");
    if (!in_value) raise(EINVAL, "Invalid parameter '{}'", key);
    values_[key] = value;
    key.clear();
    value.clear();
    in_value = false;
  };
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (c == ',') {
      if (in_value && i + 1 < text.size() && text[i + 1] == ',') {
        value.push_back(',');
        i++;
        continue;
      }
      finish();
    } else if (c == '=' && !in_value) {
      in_value = true;
    } else {
      (in_value ? value : key).push_back(c);
    }
  }
  finish();
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
  auto size = parse_size(*v);
  if (!size) raise(EINVAL, "Parameter '{}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.", key);
  return size;
}

std::optional<uint64_t> OptionValues::get_number(const std::string& key) const {
  auto v = get(key);
  if (!v) return std::nullopt;
  uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || ptr != v->data() + v->size() || v->empty()) raise(EINVAL, "Parameter '{}' expects a number", key);
  return n;
}

void OptionValues::validate(const std::vector<OptionSpec>& specs) const {
  for (const auto& [key, value] : values_) {
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == key) spec = &s;
    if (!spec) raise(EINVAL, "Invalid parameter '{}'", key);
    switch (spec->type) {
      case OptionType::Bool: get_bool(key); break;
      case OptionType::Size: get_size(key); break;
      case OptionType::Number: get_number(key); break;
      case OptionType::String: break;
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
