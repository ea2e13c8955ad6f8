#include "tools/common/tool_main.h"

#include <cstdio>

#include "base/error.h"

namespace keel::tools {

namespace {
std::string g_tool_name = "keel";
}

void print_error(const std::string& message) {
  // Like qemu's error_report(): the program name prefixes the first line only.
  std::fprintf(stderr, "%s: %s\n", g_tool_name.c_str(), message.c_str());
}

block::CacheMode parse_cache_mode(const std::string& name, std::string_view what) {
  auto mode = block::CacheMode::parse(name);
  if (!mode) raise(EINVAL, "Invalid {} option: {}", what, name);
  return *mode;
}

int run_tool(const std::string& tool_name, const std::function<int()>& body) {
  g_tool_name = tool_name;
  try {
    return body();
  } catch (const ExitStatus& e) {
    return e.code;
  } catch (const Error& e) {
    print_error(e.message());
    return 1;
  } catch (const std::bad_alloc&) {
    print_error("Out of memory");
    return 1;
  }
}

}  // namespace keel::tools
