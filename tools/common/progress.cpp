#include "tools/common/progress.h"

namespace keel::tools {

void ProgressLine::update(double percent) {
  if (!enabled_ || finished_) return;
  if (started_ && percent != 100 && percent != 0 && percent < last_printed_ + 1.0) return;
  started_ = true;
  last_printed_ = percent;
  std::printf("    (%3.2f/100%%)\r", percent);
  std::fflush(stdout);
}

void ProgressLine::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace keel::tools
