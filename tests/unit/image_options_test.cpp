// qemu's option strings for naming an image (--image-opts, open -o).
#include <gtest/gtest.h>

#include "base/error.h"
#include "block/image_options.h"

using namespace keel;
using namespace keel::block;

TEST(ImageOptions, MapsQemuKeysOntoOpenOptions) {
  ImageOptions o;
  apply_image_options("driver=qcow2,file.filename=a,,b.qcow2,cache.direct=on,cache.no-flush=on,force-share=on,file.aio=threads", o);
  EXPECT_EQ(o.filename, "a,b.qcow2");
  EXPECT_EQ(o.open.format, "qcow2");
  EXPECT_TRUE(o.open.cache.direct);
  EXPECT_TRUE(o.open.cache.no_flush);
  EXPECT_TRUE(o.open.force_share);
  EXPECT_EQ(o.aio, "threads");
  EXPECT_FALSE(o.problem);
  apply_image_options("driver=raw,read-only=on", o);  // a later string overrides
  EXPECT_EQ(o.open.format, "raw");
  EXPECT_TRUE(o.read_only_option);
}

TEST(ImageOptions, ProblemsAreKeptForTheOpen) {
  ImageOptions bad_bool;
  apply_image_options("read-only=maybe", bad_bool);
  EXPECT_EQ(bad_bool.problem, "Parameter 'read-only' expects 'on' or 'off'");
  ImageOptions protocol;
  apply_image_options("file.foo=1", protocol);
  EXPECT_EQ(protocol.problem, "Block protocol 'file' doesn't support the option 'foo'");
  ImageOptions node;
  apply_image_options("file=x", node);
  EXPECT_EQ(node.problem, "Cannot find device='x' nor node-name='x'");
  ImageOptions format;
  apply_image_options("lazy-refcounts=on,foo=bar", format);
  EXPECT_EQ(format.format_options, (std::vector<std::string>{"foo", "lazy-refcounts"}));
  ImageOptions empty_key;  // kept, as qemu keeps it: "does not support the option ''"
  apply_image_options("=x", empty_key);
  EXPECT_EQ(empty_key.format_options, (std::vector<std::string>{""}));
}
