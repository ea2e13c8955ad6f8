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

TEST(CreateOptions, QemuOptsShortFormsAndHelp) {
  OptionValues v;
  v.parse("lazy_refcounts,noextended_l2,,,a=b,,c,=x,help");
  EXPECT_EQ(v.get("lazy_refcounts"), "on");
  EXPECT_EQ(v.get("extended_l2"), "off");
  EXPECT_EQ(v.get("a"), "b,c");
  EXPECT_EQ(v.get(""), "x");  // kept, for "Invalid parameter ''"
  EXPECT_TRUE(v.help_requested());
  OptionValues repeated;  // every value is checked, not only the one that wins
  repeated.parse("cluster_size=bad,cluster_size=64k");
  EXPECT_EQ(repeated.get_size("cluster_size"), 65536u);
  EXPECT_THROW(repeated.validate(qcow2::create_options()), Error);
}

TEST(CreateOptions, InvalidOptionLists) {
  for (const char* bad : {"", ",", "a=1,", ",a=1", "a=1,,,"}) EXPECT_THROW(check_option_list(bad), Error) << bad;
  for (const char* good : {"a=1", "a=1,,", "a=1,,,,", "a,b"}) EXPECT_NO_THROW(check_option_list(good)) << good;
}
