// Image creation options ("-o key=value,...") with qemu's syntax and checks.
// Each format declares its options once; the same table validates input,
// prints "-o help", and prints the "Formatting ..." line in qemu's order.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::block {

enum class OptionType { String, Bool, Number, Size };

struct OptionSpec {
  std::string name;
  OptionType type;
  std::string help;
  std::optional<std::string> default_value;  // printed in "Formatting" even when not given
};

// Raises "Invalid option list: TEXT" for a list qemu-img refuses outright:
// empty, or with an empty first or last item.
void check_option_list(std::string_view text);

class OptionValues {
 public:
  // Parses "a=b,c=d" as qemu's QemuOpts do: ",," in a value is a literal
  // comma, a later key wins, an item "X" alone means X=on and "noX" X=off,
  // empty items are skipped, and "help" or "?" asks for the option list.
  void parse(std::string_view text);
  void set(const std::string& key, std::string value);
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  std::optional<std::string> get(const std::string& key) const;
  // Typed getters; raise EINVAL with qemu's wording on a malformed value.
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<uint64_t> get_size(const std::string& key) const;
  std::optional<uint64_t> get_number(const std::string& key) const;
  const std::map<std::string, std::string>& all() const { return values_; }
  // True when an item was "help" or "?".
  bool help_requested() const { return help_requested_; }

  // Raises "Invalid parameter 'x'" for a key not in `specs`, and checks each
  // typed value parses: every value given, in order, as qemu does when parsing
  // (so "size=x,size=1M" is refused although the later value wins).
  void validate(const std::vector<OptionSpec>& specs) const;

 private:
  std::map<std::string, std::string> values_;
  // Every key=value as given, repeats included: qemu checks each one.
  std::vector<std::pair<std::string, std::string>> given_;
  bool help_requested_ = false;
};

// The value as qemu prints it in "Formatting ...": sizes and numbers normalised.
std::string option_display_value(const OptionSpec& spec, const std::string& value);

}  // namespace keel::block
