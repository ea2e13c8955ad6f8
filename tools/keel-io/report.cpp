#include "tools/keel-io/report.h"

#include <cinttypes>
#include <cstdio>

namespace keel::io {

namespace {

// printf() formatting, so that inf, nan and rounding read as qemu-io's do.
template <typename... Args>
std::string printf_string(const char* format, Args... args) {
  char buffer[128];
  std::snprintf(buffer, sizeof buffer, format, args...);
  return buffer;
}

double seconds(std::chrono::nanoseconds t) { return static_cast<double>(t.count()) / 1e9; }

}  // namespace

std::string human_bytes(double value) {
  struct Unit {
    int shift;
    const char* suffix;
  };
  static constexpr Unit kUnits[] = {{60, " EiB"}, {50, " PiB"}, {40, " TiB"}, {30, " GiB"}, {20, " MiB"}, {10, " KiB"}};
  std::string number;
  const char* suffix = " bytes";
  for (const Unit& u : kUnits) {
    const double unit = static_cast<double>(int64_t{1} << u.shift);
    if (value >= unit) {
      number = printf_string("%.3f", value / unit);
      suffix = u.suffix;
      break;
    }
  }
  if (number.empty()) number = printf_string("%f", value);
  // "4.000" reads "4"; qemu cuts at the first ".000", wherever it is.
  if (const size_t zeros = number.find(".000"); zeros != std::string::npos) number.resize(zeros);
  return number + suffix;
}

std::string elapsed_text(std::chrono::nanoseconds elapsed, bool machine) {
  const auto whole = std::chrono::duration_cast<std::chrono::seconds>(elapsed);
  const unsigned secs = static_cast<unsigned>(whole.count());
  const double fraction = static_cast<double>((elapsed - whole).count()) / 1e9;
  if (!machine && secs == 0) return printf_string("%05.2f sec", fraction);
  return printf_string("%u:%02u:%05.2f", secs / 3600, secs % 3600 / 60, (secs % 60) + fraction);
}

std::string transfer_report(const Transfer& t, bool machine) {
  const std::string time = elapsed_text(t.elapsed, machine);
  const double s = seconds(t.elapsed);
  if (machine)
    return printf_string("%" PRId64 ",%d,%s,%.3f,%.3f\n", t.total, t.ops, time.c_str(), static_cast<double>(t.total) / s,
                         static_cast<double>(t.ops) / s);
  return printf_string("%.*s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", static_cast<int>(t.op.size()), t.op.data(),
                       t.total, t.count, t.offset) +
         printf_string("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", human_bytes(static_cast<double>(t.total)).c_str(), t.ops,
                       time.c_str(), human_bytes(static_cast<double>(t.total) / s).c_str(), static_cast<double>(t.ops) / s);
}

}  // namespace keel::io
