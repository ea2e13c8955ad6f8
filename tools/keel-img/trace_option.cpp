#include "tools/keel-img/trace_option.h"

#include <cstdio>
#include <fstream>
#include <utility>
#include <vector>

#include "base/error.h"
#include "tools/common/tool_main.h"

namespace keel::img {

namespace {

void warn(const std::string& message) { tools::print_error("warning: " + message); }

// A pattern with a wildcard may match nothing silently; a plain name must exist.
void enable(const std::string& pattern) {
  if (pattern == "help") throw tools::ExitStatus{0};  // the list of events, which is empty
  if (!pattern.empty() && pattern.find('*') == std::string::npos)
    warn(fmt::format("trace event '{}' does not exist", pattern));
}

void enable_from_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    // qemu reports this one without the space after the program's name.
    std::fprintf(stderr, "keel-img:%s: %s\n", path.c_str(), errno_text(errno).c_str());
    throw tools::ExitStatus{1};
  }
  for (std::string line; std::getline(file, line);) {
    const size_t start = line.find_first_not_of(" \t");
    const size_t end = line.find_last_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    enable(line.substr(start, end - start + 1));
  }
}

}  // namespace

void apply_trace_option(const std::string& text) {
  // QemuOpts with the implied key "enable" for a first item without '=';
  // the whole list is checked before any of it takes effect.
  std::vector<std::pair<std::string, std::string>> items;
  size_t i = 0;
  for (bool first = true; i <= text.size(); first = false) {
    size_t end = text.find(',', i);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(i, end - i);
    i = end + 1;
    const size_t equals = item.find('=');
    std::string key = item.substr(0, equals), value;
    if (equals != std::string::npos) {
      value = item.substr(equals + 1);
    } else if (first) {
      value = key;
      key = "enable";
    } else if (!item.empty()) {
      warn(fmt::format("short-form boolean option '{}' deprecated\nPlease use {}=on instead", key, key));
      value = "on";
    } else {
      continue;
    }
    if (key != "enable" && key != "events" && key != "file") raise(EINVAL, "Invalid parameter '{}'", key);
    items.emplace_back(key, value);
  }
  for (const auto& [key, value] : items) {
    if (key == "enable") enable(value);
    else if (key == "events") enable_from_file(value);
  }
}

}  // namespace keel::img
