#include <gtest/gtest.h>

#include "base/error.h"
#include "block/options.h"
#include "formats/qcow2/create.h"

using namespace keel;
using namespace keel::block;

TEST(CreateOptions, ParsesQemuSyntaxWithEscapedCommas) {
  OptionValues v;
  v.parse("cluster_size=4k,backing_file=a,,b.qcow2,lazy_refcounts=on");
  EXPECT_EQ(v.get_size("cluster_size"), 4096u);
  EXPECT_EQ(v.get("backing_file"), "a,b.qcow2");
  EXPECT_EQ(v.get_bool("lazy_refcounts"), true);
  v.parse("lazy_refcounts=off");  // a later -o overrides
  EXPECT_EQ(v.get_bool("lazy_refcounts"), false);
}

TEST(CreateOptions, RejectsUnknownKeysAndBadValues) {
  const auto& specs = qcow2::create_options();
  OptionValues unknown;
  unknown.parse("foo=bar");
  EXPECT_THROW(unknown.validate(specs), Error);
  OptionValues bad_bool;
  bad_bool.parse("lazy_refcounts=maybe");
  EXPECT_THROW(bad_bool.validate(specs), Error);
  OptionValues bad_size;
  bad_size.parse("cluster_size=64q");
  EXPECT_THROW(bad_size.validate(specs), Error);
  OptionValues flag_as_size;  // "cluster_size" alone is cluster_size=on
  flag_as_size.parse("cluster_size");
  EXPECT_THROW(flag_as_size.validate(specs), Error);
  OptionValues good;
  good.parse("cluster_size=64k,refcount_bits=8");
  EXPECT_NO_THROW(good.validate(specs));
}
