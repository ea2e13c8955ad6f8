// Where `keel-img convert` puts its output. A new image is made under a
// temporary name beside the target and renamed over it once complete
// (tools/common/atomic_output), so an existing target survives a failing
// convert; qemu-img truncates it at create instead. Everything else a qemu
// user can see is qemu's: symbolic links are written through, -n, devices,
// FIFOs and hard-linked files are written in place, and a replaced file keeps
// its mode and extended attributes. The kill tests are in tests/crash.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

namespace fs = std::filesystem;

// A directory per tool with the same source in each, so that both run on
// identical inputs under identical names.
struct Dirs {
  TempDir tmp;
  std::string keel = tmp.file("keel"), qemu = tmp.file("qemu");
  std::vector<uint8_t> old = random_bytes(64 << 10, 99);  // what an existing target holds
  Dirs() {
    for (const auto& d : {keel, qemu}) {
      fs::create_directory(d);
      write_file(d + "/src.raw", mixed_content(3 << 20, 41));
    }
  }
  std::vector<std::string> both() const { return {keel, qemu}; }
};

// The names in `dir` (and its subdirectories), relative to it.
std::set<std::string> listing(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(dir)) names.insert(fs::relative(e.path(), dir));
  return names;
}

::testing::AssertionResult no_temporaries(const std::string& dir) {
  for (const auto& name : listing(dir))
    if (name.find(".keel-") != std::string::npos) return ::testing::AssertionFailure() << "left " << dir << "/" << name;
  return ::testing::AssertionSuccess();
}

// Runs `convert args` with both tools, each in its own directory, expecting
// the same status and messages; returns keel's result.
RunResult convert_in_both(const Dirs& d, const std::vector<std::string>& args) {
  std::vector<std::string> cmd{"convert"};
  cmd.insert(cmd.end(), args.begin(), args.end());
  const auto q = qemu_img_in(d.qemu, cmd);
  const auto k = keel_img_in(d.keel, cmd);
  EXPECT_EQ(k.status, q.status) << describe("keel-img", k) << "\n" << describe("qemu-img", q);
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << join(cmd);
  return k;
}

// The last progress line -p printed (the one before the final newline).
std::string last_progress(const std::string& out) {
  const size_t end = out.find_last_not_of("\r\n");
  if (end == std::string::npos) return "";
  const size_t start = out.rfind('\r', end);
  return out.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1));
}

// A successful convert into a new file leaves the image and nothing else;
// -p prints the same last progress line as qemu-img.
TEST(interop_convert, NewTargetLeavesNoTemporaryFile) {
  KEEL_REQUIRE_QEMU();
  for (const std::string fmt : {"raw", "qcow2"}) {
    Dirs d;
    const auto k = convert_in_both(d, {"-p", "-f", "raw", "-O", fmt, "src.raw", "out.img"});
    ASSERT_EQ(k.status, 0);
    EXPECT_EQ(listing(d.keel), listing(d.qemu)) << fmt;
    EXPECT_EQ(listing(d.keel), (std::set<std::string>{"src.raw", "out.img"}));
    const auto cmp = qemu_img({"compare", "-f", "raw", "-F", fmt, d.keel + "/src.raw", d.keel + "/out.img"});
    EXPECT_EQ(cmp.status, 0) << describe("qemu-img compare", cmp);
    const auto qp = qemu_img_in(d.qemu, {"convert", "-p", "-f", "raw", "-O", fmt, "src.raw", "again.img"});
    EXPECT_EQ(last_progress(k.out), last_progress(qp.out)) << "keel: " << k.out << "\nqemu: " << qp.out;
    EXPECT_FALSE(last_progress(k.out).empty());
  }
}

// An existing target is replaced by the new image, keeping its mode and
// extended attributes (qemu-img rewrites the same file, so they stay).
TEST(interop_convert, ReplacedTargetKeepsModeAndAttributes) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  bool have_xattr = true;
  for (const auto& dir : d.both()) {
    const std::string out = dir + "/out.qcow2";
    write_file(out, d.old);
    chmod(out.c_str(), 0640);
    have_xattr = have_xattr && setxattr(out.c_str(), "user.keel-test", "kept", 4, 0) == 0;
  }
  const auto k = convert_in_both(d, {"-O", "qcow2", "src.raw", "out.qcow2"});
  ASSERT_EQ(k.status, 0);
  struct stat ks, qs;
  ASSERT_EQ(stat((d.keel + "/out.qcow2").c_str(), &ks), 0);
  ASSERT_EQ(stat((d.qemu + "/out.qcow2").c_str(), &qs), 0);
  EXPECT_EQ(ks.st_mode, qs.st_mode);
  EXPECT_EQ(ks.st_mode & 07777, 0640u);
  if (have_xattr) {
    for (const auto& dir : d.both()) {
      char value[16] = {};
      EXPECT_EQ(getxattr((dir + "/out.qcow2").c_str(), "user.keel-test", value, sizeof value), 4) << dir;
      EXPECT_STREQ(value, "kept") << dir;
    }
  }
  const auto cmp = qemu_img({"compare", "-f", "qcow2", "-F", "qcow2", d.qemu + "/out.qcow2", d.keel + "/out.qcow2"});
  EXPECT_EQ(cmp.status, 0) << describe("qemu-img compare", cmp);
  const auto chk = qemu_img({"check", "-f", "qcow2", d.keel + "/out.qcow2"});
  EXPECT_EQ(chk.status, 0) << describe("qemu-img check", chk);
  EXPECT_TRUE(no_temporaries(d.keel));
}

// A qcow2 source whose second L2 table offset is unaligned: reading fails
// with EIO after the first 2 MiB were copied.
void make_unreadable_source(const std::string& path) {
  ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", path, "8M"}).status, 0);
  qemu_io(path, "qcow2", {"write -P 0x22 0 8M"});
  const auto layout = Qcow2Layout::read(path);
  write_be(path, layout.l1_table_offset + 8, 8, read_be(path, layout.l1_table_offset + 8, 8) + 512);
}

// A convert that fails leaves an existing target as it was. qemu-img has by
// then truncated it (a source read error leaves a partial image that checks
// clean) or, when the qcow2 create itself fails, deleted it; keel keeps it.
TEST(interop_convert, FailingConvertLeavesExistingTarget) {
  KEEL_REQUIRE_QEMU();
  struct Case {
    std::string name;
    std::vector<std::string> args;
    bool same_messages;  // keel's read errors are worded differently
  };
  const std::vector<Case> cases = {
      {"bad_qcow2_option", {"-O", "qcow2", "-o", "cluster_size=123", "src.raw", "out.img"}, true},
      {"bad_raw_option", {"-O", "raw", "-o", "preallocation=metadata", "src.raw", "out.img"}, true},
      {"source_read_error_qcow2", {"-f", "qcow2", "-O", "qcow2", "bad.qcow2", "out.img"}, false},
      {"source_read_error_raw", {"-f", "qcow2", "-O", "raw", "bad.qcow2", "out.img"}, false},
      // The source's locks refuse a writer, even this process's.
      {"target_is_the_source", {"-f", "raw", "-O", "raw", "out.img", "out.img"}, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Dirs d;
    for (const auto& dir : d.both()) {
      ASSERT_NO_FATAL_FAILURE(make_unreadable_source(dir + "/bad.qcow2"));
      write_file(dir + "/out.img", d.old);
    }
    std::vector<std::string> cmd{"convert"};
    cmd.insert(cmd.end(), c.args.begin(), c.args.end());
    const auto q = qemu_img_in(d.qemu, cmd);
    const auto k = keel_img_in(d.keel, cmd);
    EXPECT_NE(q.status, 0);
    EXPECT_EQ(k.status, q.status) << describe("keel-img", k) << "\n" << describe("qemu-img", q);
    if (c.same_messages) {
      EXPECT_EQ(k.err, as_keel_stderr(q.err));
    }
    EXPECT_EQ(read_file(d.keel + "/out.img"), d.old) << "the existing target changed";
    EXPECT_TRUE(no_temporaries(d.keel));
  }
}

// -n writes into the existing image itself: same inode, seen through its
// other hard links, as with qemu-img.
TEST(interop_convert, NoCreateWritesInPlace) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  ino_t before = 0;
  for (const auto& dir : d.both()) {
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", dir + "/out.qcow2", "3M"}).status, 0);
    fs::create_hard_link(dir + "/out.qcow2", dir + "/alias.qcow2");
  }
  struct stat st;
  ASSERT_EQ(stat((d.keel + "/out.qcow2").c_str(), &st), 0);
  before = st.st_ino;
  ASSERT_EQ(convert_in_both(d, {"-n", "-f", "raw", "-O", "qcow2", "src.raw", "out.qcow2"}).status, 0);
  ASSERT_EQ(stat((d.keel + "/out.qcow2").c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, before) << "-n replaced the target";
  for (const auto& dir : d.both()) {
    const auto cmp = qemu_img({"compare", "-f", "raw", "-F", "qcow2", dir + "/src.raw", dir + "/alias.qcow2"});
    EXPECT_EQ(cmp.status, 0) << dir << ": " << describe("qemu-img compare", cmp);
  }
  EXPECT_EQ(listing(d.keel), listing(d.qemu));
}

// A target with other hard links is written in place, so that every name of
// it sees the new image, as with qemu-img.
TEST(interop_convert, HardLinkedTargetWrittenInPlace) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  for (const auto& dir : d.both()) {
    write_file(dir + "/out.raw", d.old);
    fs::create_hard_link(dir + "/out.raw", dir + "/alias.raw");
  }
  ASSERT_EQ(convert_in_both(d, {"-f", "raw", "-O", "raw", "src.raw", "out.raw"}).status, 0);
  for (const auto& dir : d.both()) {
    EXPECT_TRUE(files_identical(dir + "/src.raw", dir + "/alias.raw")) << dir;
    EXPECT_TRUE(files_identical(dir + "/src.raw", dir + "/out.raw")) << dir;
  }
  EXPECT_TRUE(no_temporaries(d.keel));
}

// A symbolic link target is written through: the link stays and names the
// new image, made beside the file it names (so in that file's directory),
// whether that file exists yet or not; qemu-img opens through the link too.
TEST(interop_convert, SymlinkTargetWrittenThrough) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  for (const auto& dir : d.both()) {
    fs::create_directory(dir + "/real");
    fs::create_symlink("real/img.qcow2", dir + "/link.qcow2");  // dangling until the first convert
    fs::create_symlink("link.qcow2", dir + "/link2.qcow2");
  }
  for (const std::string target : {"link.qcow2", "link2.qcow2"}) {
    SCOPED_TRACE(target);
    ASSERT_EQ(convert_in_both(d, {"-f", "raw", "-O", "qcow2", "src.raw", target}).status, 0);
    for (const auto& dir : d.both()) {
      EXPECT_TRUE(fs::is_symlink(dir + "/link.qcow2")) << dir;
      EXPECT_EQ(fs::read_symlink(dir + "/link.qcow2"), "real/img.qcow2") << dir;
      EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir + "/real/img.qcow2"))) << dir;
      const auto cmp = qemu_img({"compare", "-f", "raw", "-F", "qcow2", dir + "/src.raw", dir + "/real/img.qcow2"});
      EXPECT_EQ(cmp.status, 0) << dir << ": " << describe("qemu-img compare", cmp);
    }
    EXPECT_EQ(listing(d.keel), listing(d.qemu));
    EXPECT_TRUE(no_temporaries(d.keel));
  }
  // Through the links, too, a failing convert leaves the image as it was.
  ASSERT_NO_FATAL_FAILURE(make_unreadable_source(d.keel + "/bad.qcow2"));
  const auto before = read_file(d.keel + "/real/img.qcow2");
  const auto k = keel_img_in(d.keel, {"convert", "-f", "qcow2", "-O", "qcow2", "bad.qcow2", "link2.qcow2"});
  EXPECT_NE(k.status, 0);
  EXPECT_EQ(read_file(d.keel + "/real/img.qcow2"), before) << "a failing convert changed the image behind the link";
  EXPECT_TRUE(fs::is_symlink(d.keel + "/link2.qcow2"));
  EXPECT_TRUE(no_temporaries(d.keel));
}

// A relative backing file name resolves against the target's directory,
// which is also the temporary file's, so the target opens with the same
// backing file as under qemu-img, and a missing one is reported under the
// target's name.
TEST(interop_convert, RelativeBackingFileOfTemporaryTarget) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  for (const auto& dir : d.both()) {
    fs::create_directory(dir + "/images");
    ASSERT_EQ(qemu_img({"create", "-q", "-f", "qcow2", dir + "/images/base.qcow2", "3M"}).status, 0);
  }
  const std::vector<std::string> args = {"-f", "raw", "-O", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2",
                                         "src.raw"};
  auto with_target = [&](const std::string& target) {
    auto a = args;
    a.push_back(target);
    return a;
  };
  ASSERT_EQ(convert_in_both(d, with_target("images/out.qcow2")).status, 0);
  const auto info = same_as_qemu({"info", "--output=json", "-f", "qcow2", "-U", d.keel + "/images/out.qcow2"});
  EXPECT_NE(info.out.find("\"backing-filename\": \"base.qcow2\""), std::string::npos) << info.out;
  const auto cmp = qemu_img({"compare", "-f", "raw", "-F", "qcow2", d.keel + "/src.raw", d.keel + "/images/out.qcow2"});
  EXPECT_EQ(cmp.status, 0) << describe("qemu-img compare", cmp);
  // Without the backing file in the target's directory: qemu-img's error, naming the target.
  EXPECT_NE(convert_in_both(d, with_target("other.qcow2")).status, 0);
  EXPECT_TRUE(no_temporaries(d.keel));
}

// Devices and FIFOs are never replaced: no temporary file beside them, and
// the node stays what it was. (The messages are keel's where they differ.)
TEST(interop_convert, DeviceAndFifoTargetsNotReplaced) {
  KEEL_REQUIRE_QEMU();
  Dirs d;
  for (const auto& dir : d.both()) ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0644), 0);
  for (const std::string target : {"fifo", "/dev/null"}) {
    SCOPED_TRACE(target);
    std::vector<std::string> cmd{"convert", "-f", "raw", "-O", "raw", "src.raw", target};
    const auto q = qemu_img_in(d.qemu, cmd);
    const auto k = keel_img_in(d.keel, cmd);
    EXPECT_EQ(k.status, q.status) << describe("keel-img", k) << "\n" << describe("qemu-img", q);
  }
  struct stat st;
  ASSERT_EQ(lstat((d.keel + "/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(lstat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_TRUE(no_temporaries(d.keel));
  for (const auto& e : fs::directory_iterator("/dev"))
    EXPECT_EQ(e.path().filename().string().find(".keel-"), std::string::npos) << "left " << e.path();
}

// The new image is flushed before the rename and the directory after it,
// so that after a power loss the target's name holds the old file or the
// whole new image. Observed with strace.
TEST(interop_convert, RenameIsDurable) {
  if (!have_program("strace")) GTEST_SKIP() << "strace not installed";
  TempDir t;
  write_file(t.file("src.raw"), random_bytes(1 << 20, 5));
  const auto r = run({"strace", "-f", "-e", "trace=openat,fsync,fdatasync,rename,renameat,renameat2", "-o",
                      t.file("trace"), keel_bin("keel-img"), "convert", "-O", "qcow2", t.file("src.raw"),
                      t.file("out.qcow2")});
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream trace(t.file("trace"));
  const std::regex open_re(R"re(openat\(AT_FDCWD, "([^"]*)", ([^)]*)\) = (\d+))re");
  const std::regex fsync_re(R"re(fsync\((\d+)\) += 0)re");
  const std::regex rename_re(R"re(rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]*)", (?:AT_FDCWD, )?"([^"]*)".*= 0)re");
  std::map<std::string, std::string> fd_path;  // the file each descriptor was last opened on
  bool file_flushed = false, renamed = false, directory_flushed = false;
  std::string line;
  while (std::getline(trace, line)) {
    std::smatch m;
    if (std::regex_search(line, m, open_re)) {
      fd_path[m[3]] = m[1];
    } else if (std::regex_search(line, m, fsync_re)) {
      const std::string& path = fd_path[m[1]];
      if (!renamed && path.find("/.out.qcow2.keel-") != std::string::npos) file_flushed = true;
      if (renamed && fs::path(path) == fs::path(t.path() + "/")) directory_flushed = true;
    } else if (std::regex_search(line, m, rename_re)) {
      const std::string from = m[1];
      renamed = m[2] == t.file("out.qcow2") && from.find("/.out.qcow2.keel-") != std::string::npos;
    }
  }
  EXPECT_TRUE(renamed) << "no rename of a temporary file onto the target";
  EXPECT_TRUE(file_flushed) << "the image was not fsynced before the rename";
  EXPECT_TRUE(directory_flushed) << "the directory was not fsynced after the rename";
}

}  // namespace
}  // namespace keel::test::interop
