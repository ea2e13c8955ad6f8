#include "tools/keel-img/option_help.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace keel::img {

namespace {

// What qemu's file protocol adds to a format's creation options, as far as
// keel implements it; a format table that repeats one word for word (raw
// passes preallocation through) has it from the protocol level.
bool is_file_protocol_option(const block::OptionSpec& spec) {
  return spec.name == "preallocation" && spec.help == "Preallocation mode (allowed values: off, falloc, full)";
}

const char* type_name(block::OptionType type) {
  switch (type) {
    case block::OptionType::Size: return "size";
    case block::OptionType::Bool: return "bool (on/off)";
    case block::OptionType::Number: return "num";
    case block::OptionType::String: return "str";
  }
  return "str";
}

}  // namespace

void print_option_help(const block::FormatDriver& driver, bool with_filename) {
  auto specs = driver.create_options();
  if (!with_filename) std::erase_if(specs, is_file_protocol_option);
  std::sort(specs.begin(), specs.end(), [](auto& a, auto& b) { return a.name < b.name; });
  if (with_filename) std::printf("Supported options:\n");
  else std::printf("Supported %s options:\n", std::string(driver.name).c_str());
  for (const auto& s : specs) {
    const std::string left = fmt::format("{}=<{}>", s.name, type_name(s.type));
    std::printf("  %-22s - %s\n", left.c_str(), s.help.c_str());
  }
  if (!with_filename)
    std::printf("\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n");
}

}  // namespace keel::img
