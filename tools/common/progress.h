// qemu's progress line for -p: "    (12.34/100%)\r", redrawn on each whole
// percent, ended with a newline.
#pragma once

#include <cstdio>

namespace keel::tools {

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled) {}
  ~ProgressLine() { finish(); }
  void update(double percent);
  void finish();

 private:
  bool enabled_;
  bool started_ = false;
  bool finished_ = false;
  double last_printed_ = -100;
};

}  // namespace keel::tools
