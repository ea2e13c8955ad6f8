// Command-line conformance: a table of qemu-img command lines (global
// options, create/info/convert/check options, sizes, option lists, file
// names, bad values), each run by qemu-img and by keel-img in two scratch
// directories prepared alike. Exit status, stdout and stderr (program name
// aside) must be the same, and so must the files each run leaves behind.
//
// Left out on purpose: what keel-img does not have (resize, snapshot, commit,
// --object (its errors are in nbd_tls_test), convert -B/-C/-l/-r/--salvage/--bitmaps), help texts (qemu's name
// its own formats and trace events), "-o help" listings that would show
// options keel does not implement (qcow2's encrypt.*, the file protocol's
// nocow and extent_size_hint), and two bad convert values that qemu-img finds
// only after creating the output (-t bogus, -c to raw): keel refuses them
// first, and the output's creation belongs to the convert job.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "tests/interop/interop_util.h"

namespace keel::test::interop {
namespace {

struct CliCase {
  std::string name;
  std::vector<std::string> args;
};

std::ostream& operator<<(std::ostream& o, const CliCase& c) { return o << join(c.args); }

// A readable test name for any argument text: "-o size=1M,," becomes "m_o_size_eq_1M_c_c".
std::string name_part(const std::string& text) {
  static const std::pair<char, const char*> kWords[] = {
      {' ', "_"},     {',', "_c_"},    {'=', "_eq_"}, {'.', "_dot_"}, {'-', "m"},     {':', "_colon_"},
      {'+', "plus"},  {'?', "qmark"},  {'\t', "tab"}, {'/', "_sl_"},  {'{', "_lb_"},  {'}', "_rb_"},
      {'"', "_dq_"},  {'[', "_ls_"},   {']', "_rs_"}, {'*', "star"},  {'\'', "_sq_"}, {'_', "_"}};
  std::string out;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      out.push_back(c);
      continue;
    }
    const auto* word = std::find_if(std::begin(kWords), std::end(kWords), [&](const auto& w) { return w.first == c; });
    out += word != std::end(kWords) ? word->second : "_x_";
  }
  return out.empty() ? "empty" : out;
}

class Table {
 public:
  // A row named `name`.
  void add(const std::string& name, std::vector<std::string> args) { rows_.push_back({unique(name), std::move(args)}); }
  // A row named after its arguments past the first `skip`.
  void add_named_by_args(const std::string& prefix, std::vector<std::string> args, size_t skip = 1) {
    std::string name = prefix;
    for (size_t i = skip; i < args.size(); i++) name += "_" + name_part(args[i]);
    add(name, std::move(args));
  }
  std::vector<CliCase> rows() const { return rows_; }

 private:
  std::string unique(std::string name) {
    while (name.find("__") != std::string::npos) name.replace(name.find("__"), 2, "_");
    while (!name.empty() && name.back() == '_') name.pop_back();
    std::string candidate = name;
    for (int n = 2; !names_.insert(candidate).second; n++) candidate = name + "_" + std::to_string(n);
    return candidate;
  }
  std::vector<CliCase> rows_;
  std::set<std::string> names_;
};

void global_rows(Table& t) {
  t.add("global_no_arguments", {});
  t.add("global_unknown_short", {"-x"});
  t.add("global_unknown_long", {"--foo"});
  t.add("global_unknown_command", {"foo"});
  t.add("global_unknown_command_with_args", {"foo", "-f", "raw"});
  t.add("global_empty_command", {""});
  t.add("global_trace_missing_argument", {"-T"});
  t.add("global_trace_long_missing_argument", {"--trace"});
  t.add("global_trace_only", {"-T", "foo"});
  t.add("global_trace_unknown_event", {"-T", "foo", "info", "src"});
  t.add("global_trace_enable_key", {"-T", "enable=foo", "info", "src"});
  t.add("global_trace_empty", {"-T", "", "info", "src"});
  t.add("global_trace_file_only", {"-T", "file=/dev/null", "info", "src"});
  t.add("global_trace_missing_events_file", {"-T", "events=missing-events", "info", "src"});
  t.add("global_trace_short_form_boolean", {"-T", "foo,bar", "info", "src"});
  t.add("global_trace_unknown_key", {"-T", "foo=1", "info", "src"});
  t.add("global_trace_twice", {"-T", "foo", "-T", "bar", "info", "src"});
  t.add("global_trace_long", {"--trace", "foo", "info", "src"});
  t.add("global_trace_long_equals", {"--trace=foo", "info", "src"});
  t.add("global_trace_abbreviated", {"--tr", "foo", "info", "src"});
  t.add("global_trace_attached", {"-Tfoo", "info", "src"});
  t.add("global_double_dash", {"--", "info", "src"});
  t.add("global_double_dash_only", {"--"});
  t.add("global_options_stop_at_command", {"info", "-T", "foo", "src"});
  t.add("global_version_with_argument", {"--version=1"});
  t.add("global_help_with_argument", {"--help=1"});
  t.add("global_ambiguous_abbreviation_is_version", {"--v=1"});
}

void info_rows(Table& t) {
  t.add("info_no_file", {"info"});
  t.add("info_empty_name", {"info", ""});
  t.add("info_two_files", {"info", "src", "q2"});
  t.add("info_missing_file", {"info", "missing"});
  t.add("info_raw", {"info", "src"});
  t.add("info_qcow2", {"info", "q2"});
  t.add("info_option_after_file", {"info", "q2", "-f", "qcow2"});
  t.add("info_format_attached", {"info", "-fqcow2", "q2"});
  t.add("info_format_long", {"info", "--format=qcow2", "q2"});
  t.add("info_format_long_separate", {"info", "--format", "qcow2", "q2"});
  t.add("info_format_abbreviated", {"info", "--form", "qcow2", "q2"});
  t.add("info_format_ambiguous", {"info", "--f", "qcow2", "q2"});
  t.add("info_format_missing_argument", {"info", "-f"});
  t.add("info_format_unknown", {"info", "-f", "bogus", "src"});
  t.add("info_format_wrong", {"info", "-f", "qcow2", "src"});
  t.add("info_unknown_short", {"info", "-x", "src"});
  t.add("info_unknown_short_first_in_group", {"info", "-xU", "src"});
  t.add("info_unknown_short_last_in_group", {"info", "-Ux", "src"});
  t.add("info_quiet_not_an_info_option", {"info", "-q", "src"});
  t.add("info_unknown_long", {"info", "--foo", "src"});
  t.add("info_output_json", {"info", "--output=json", "q2"});
  t.add("info_output_json_separate", {"info", "--output", "json", "q2"});
  t.add("info_output_human", {"info", "--output=human", "q2"});
  t.add("info_output_empty", {"info", "--output=", "src"});
  t.add("info_output_bad", {"info", "--output=xml", "src"});
  t.add("info_output_bad_case", {"info", "--output=JSON", "src"});
  t.add("info_output_missing_argument", {"info", "--output"});
  t.add("info_output_bad_without_file", {"info", "--output=xml"});
  t.add("info_output_abbreviated", {"info", "--out=json", "src"});
  t.add("info_output_twice", {"info", "--output=xml", "--output=json", "src"});
  t.add("info_backing_chain", {"info", "--backing-chain", "q2"});
  t.add("info_backing_chain_with_argument", {"info", "--backing-chain=x", "q2"});
  t.add("info_backing_chain_abbreviated", {"info", "--back", "q2"});
  t.add("info_force_share", {"info", "-U", "q2"});
  t.add("info_force_share_long", {"info", "--force-share", "q2"});
  t.add("info_force_share_with_argument", {"info", "--force-share=on", "q2"});
  t.add("info_double_dash_then_dash_name", {"info", "--", "-x"});
  t.add("info_image_opts", {"info", "--image-opts", "driver=qcow2,file.filename=q2"});
  t.add("info_image_opts_probed", {"info", "--image-opts", "file.filename=src"});
  t.add("info_image_opts_with_format", {"info", "--image-opts", "-f", "raw", "src"});
  t.add("info_image_opts_plain_name", {"info", "--image-opts", "src"});
  t.add("info_image_opts_plain_name_first", {"info", "--image-opts", "src,driver=raw"});
  t.add("info_image_opts_empty_key", {"info", "--image-opts", "driver=raw,=x,file.filename=src"});
  t.add("info_image_opts_empty", {"info", "--image-opts", "=x"});
  t.add("info_image_opts_unknown_driver", {"info", "--image-opts", "driver=bogus,file.filename=src"});
}

void create_rows(Table& t) {
  t.add("create_no_file", {"create"});
  t.add("create_no_size", {"create", "img"});
  t.add("create_no_size_qcow2", {"create", "-f", "qcow2", "img"});
  t.add("create_unexpected_argument", {"create", "img", "1M", "x"});
  t.add("create_default_raw", {"create", "img", "1M"});
  t.add("create_quiet", {"create", "-q", "img", "1M"});
  t.add("create_options_after_operands", {"create", "img", "1M", "-f", "qcow2"});
  t.add("create_format_attached", {"create", "-fqcow2", "img", "1M"});
  t.add("create_format_unknown", {"create", "-f", "bogus", "img", "1M"});
  t.add("create_format_unknown_no_file", {"create", "-f", "bogus"});
  t.add("create_format_missing_argument", {"create", "img", "1M", "-f"});
  t.add("create_options_missing_argument", {"create", "img", "1M", "-o"});
  t.add("create_unknown_short", {"create", "-x", "img", "1M"});
  t.add("create_unknown_long", {"create", "--format=raw", "img", "1M"});
  t.add("create_force_share_not_a_create_option", {"create", "-U", "img", "1M"});
  t.add("create_negative_size_is_an_option", {"create", "img", "-1"});
  t.add("create_negative_size_after_double_dash", {"create", "img", "--", "-1"});
  t.add("create_size_twice", {"create", "-o", "size=2M", "img", "1M"});
  t.add("create_size_twice_same", {"create", "-o", "size=1M", "img", "1M"});
  t.add("create_size_twice_option_last", {"create", "img", "1M", "-o", "size=2M"});
  t.add("create_help_raw_no_file", {"create", "-f", "raw", "-o", "help"});
  t.add("create_help_default_no_file", {"create", "-o", "help"});
  t.add("create_question_mark_no_file", {"create", "-o", "?"});
  t.add("create_help_after_other_options", {"create", "-o", "size=1M", "-o", "help"});
  t.add("create_help_unknown_format", {"create", "-f", "bogus", "-o", "help", "img"});
  t.add("create_help_invalid_list_first", {"create", "-o", "", "-o", "help"});
  t.add("create_backing_raw_refused", {"create", "-b", "src", "img", "1M"});
  t.add("create_backing_format_raw_refused", {"create", "-F", "raw", "img", "1M"});
  t.add("create_backing_missing_argument", {"create", "-f", "qcow2", "img", "-b"});
  t.add("create_backing", {"create", "-f", "qcow2", "-b", "src", "-F", "raw", "img"});
  t.add("create_backing_unsafe_no_format", {"create", "-f", "qcow2", "-u", "-b", "src", "img", "1M"});
  t.add("create_backing_same_name", {"create", "-f", "qcow2", "-b", "img", "-F", "qcow2", "img", "1M"});

  // -o lists, with raw (only "size") and qcow2 (typed options of every kind).
  for (const char* list :
       {"", ",", ",,", "size=1M,", "size=1M,,", ",size=1M", "size=1M,,,", "size=1M,,,,", "size=1M,,cluster_size=4k",
        "foo", "foo=bar", "noc", "nocow", "size", "nosize", "=5", "=", "size=1M,,=", "size=1M,size=2M",
        "size=1M,,help", "help=1", "a,,b=1", "zzz=1,aaa=2", "size=1M,foo=1,bar=2", "size=0x10", "size= 16",
        "size=1.5k", "size=-1", "size=abc", "size=", "size=1M,,,size=2M", "SIZE=1M", " size=1M"})
    t.add_named_by_args("create_raw_list", {"create", "-f", "raw", "-o", list, "img"}, 4);
  for (const char* list : {"cluster_size=4k", "cluster_size=4k,", "cluster_size=4k,,", "cluster_size=1k,lazy_refcounts",
                           "lazy_refcounts", "nolazy_refcounts", "lazy_refcounts=maybe", "lazy_refcounts=yes",
                           "refcount_bits=8", "refcount_bits=abc", "refcount_bits=", "compat=1.1", "compat=0.10",
                           "compat=bogus", "cluster_size=64q", "cluster_size=0x1000", "backing_file=a,,b",
                           "preallocation=metadata", "preallocation=bogus", "extended_l2,cluster_size=16k",
                           "cluster_size=64k,size=1M", "foo=1,cluster_size=bad"})
    t.add_named_by_args("create_qcow2_list", {"create", "-f", "qcow2", "-o", list, "img", "1M"}, 4);
  t.add("create_two_lists_joined", {"create", "-f", "qcow2", "-o", "cluster_size=4k", "-o", "lazy_refcounts=on", "img", "1M"});
  t.add("create_two_lists_later_wins", {"create", "-f", "qcow2", "-o", "cluster_size=4k", "-o", "cluster_size=8k", "img", "1M"});
  t.add("create_second_list_invalid", {"create", "-f", "qcow2", "-o", "cluster_size=4k", "-o", ",", "img", "1M"});
  t.add("create_list_attached", {"create", "-f", "qcow2", "-ocluster_size=4k", "img", "1M"});

  // Sizes, as the size argument and as "-o size=".
  for (const char* size :
       {"0", "512", "0x10", "0X10", "0x", "0x1k", "0x1.8k", "0x10b", "0xg", "00x10", "010", "1e3", " 16", "\t16", "16 ",
        "+16", " +1", "+ 1", "++1", "1.5k", "2.25k", ".5k", "5.k", "1.k", "1.", ".", "1.0", "1.0b", "1.1", "0.5",
        "1.5b", "1b", "1B", "1k", "1K", "1kb", "1M", "1.5M", "1Z", "abc", "", "0.001k", "0.4999k", "0.0005k",
        "1.9999999999999999k", "1.99999999999999999k", "0.99999999999999995k", "8192P", "8E", "16E",
        "9223372036854775808", "18446744073709551615", "18446744073709551616", "99999999999999999999",
        "0x8000000000000000", "1.2.3k", "1_0"})
    t.add_named_by_args("create_size", {"create", "-f", "raw", "img", size}, 4);
  for (const char* size : {"0x10", " 16", "1.5k", "-1", "abc", "", "1kb", "0x1.8k", "5.k", "18446744073709551616", "1e3"})
    t.add_named_by_args("create_option_size", {"create", "-f", "raw", "-o", std::string("size=") + size, "img"}, 4);
}

void name_rows(Table& t) {
  for (const char* name : {"x:y", "./x:y", "/nonexistent/a:b", "a/b:c", "a b:c", ":x", "FILE:src", "fi_le:src",
                           "file:src", "file:q2", "file:missing", "file:", "file:file:src", "json:{\"file.filename\":\"src\"}",
                           "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"src\"}}",
                           "json:{\"driver\":\"qcow2\",\"file.filename\":\"q2\"}",
                           "json:{\"driver\":\"qcow2\",\"file.filename\":\"src\"}",
                           "json:{\"driver\":\"bogus\",\"file.filename\":\"src\"}", "json:{\"file\":{\"filename\":\"src\"}}",
                           "json:{\"file.filename\":\"missing\"}", "json:{", "json:[]", "json:{}", "json:", "json: ",
                           "file:./x:y", "file:/nonexistent/a"}) {
    t.add_named_by_args("name_info", {"info", name});
    t.add_named_by_args("name_check", {"check", name});
  }
  for (const char* name : {"x:img", "./x:img", "file:img", "file:", "", "json:{\"file.filename\":\"img\"}", "FILE:img"})
    t.add_named_by_args("name_create", {"create", "-f", "raw", name, "1M"}, 3);
  t.add("name_create_qcow2_file_prefix", {"create", "-f", "qcow2", "file:img", "1M"});
  t.add("name_create_backing_file_prefix", {"create", "-f", "qcow2", "-b", "file:src", "-F", "raw", "img"});
  for (const char* name : {"x:out", "./x:out", "file:out", "", "FILE:out"})
    t.add_named_by_args("name_convert_target", {"convert", "src", name}, 2);
  for (const char* name : {"x:src", "./x:src", "file:src", "", "json:{\"file.filename\":\"src\"}", "file:missing"})
    t.add_named_by_args("name_convert_source", {"convert", name, "out"});
  t.add("name_convert_both_unknown", {"convert", "x:src", "y:out"});
}

void convert_rows(Table& t) {
  t.add("convert_no_files", {"convert"});
  t.add("convert_one_file", {"convert", "src"});
  t.add("convert_raw", {"convert", "src", "out"});
  t.add("convert_to_qcow2", {"convert", "-O", "qcow2", "src", "out"});
  t.add("convert_options_after_operands", {"convert", "src", "out", "-O", "qcow2"});
  t.add("convert_concatenate", {"convert", "src", "q2", "out"});
  t.add("convert_missing_source", {"convert", "missing", "out"});
  t.add("convert_unknown_short", {"convert", "-x", "src", "out"});
  t.add("convert_unknown_long", {"convert", "--foo", "src", "out"});
  t.add("convert_target_is_zero_with_argument", {"convert", "--target-is-zero=x", "src", "out"});
  t.add("convert_target_is_zero_without_n", {"convert", "--target-is-zero", "src", "out"});
  t.add("convert_n_with_options", {"convert", "-n", "-o", "size=1", "src", "out"});
  t.add("convert_n_missing_target", {"convert", "-n", "src", "out"});
  t.add("convert_compress_qcow2", {"convert", "-c", "-O", "qcow2", "src", "out"});
  t.add("convert_output_format_unknown", {"convert", "-O", "bogus", "src", "out"});
  t.add("convert_output_format_missing_argument", {"convert", "src", "out", "-O"});
  t.add("convert_source_format_unknown", {"convert", "-f", "bogus", "src", "out"});
  t.add("convert_source_format_wrong", {"convert", "-f", "qcow2", "src", "out"});
  t.add("convert_cache_bad_no_files", {"convert", "-t", "bogus"});
  t.add("convert_cache_none", {"convert", "-t", "none", "src", "out"});
  t.add("convert_source_cache_bad", {"convert", "-T", "bogus", "src", "out"});
  t.add("convert_source_cache_writeback", {"convert", "-T", "writeback", "src", "out"});
  t.add("convert_quiet", {"convert", "-q", "src", "out"});
  t.add("convert_out_of_order", {"convert", "-W", "src", "out"});
  t.add("convert_force_share", {"convert", "-U", "q2", "out"});
  t.add("convert_image_opts", {"convert", "--image-opts", "driver=raw,file.filename=src", "out"});
  t.add("convert_image_opts_with_format", {"convert", "--image-opts", "-f", "raw", "src", "out"});
  t.add("convert_help_no_files", {"convert", "-o", "help"});
  t.add("convert_help_one_file", {"convert", "-O", "raw", "-o", "help", "src"});
  t.add("convert_help_after_bad_sparse", {"convert", "-o", "help", "-S", "abc"});
  for (const char* list : {"", ",", "size=1,", ",cluster_size=4k", "cluster_size=4k,,", "foo=bar", "cluster_size=bad",
                           "cluster_size=4k", "nolazy_refcounts", "compat=bogus"})
    t.add_named_by_args("convert_list", {"convert", "-O", "qcow2", "-o", list, "src", "out"}, 4);
  t.add("convert_raw_size_option_ignored", {"convert", "-O", "raw", "-o", "size=1", "src", "out"});
  for (const char* m : {"-1", "0", "1", "16", "17", "abc", "1x", " 2", "0x4", "010", "", "99999999999999999999"})
    t.add_named_by_args("convert_coroutines", {"convert", "-m", m, "src", "out"}, 2);
  t.add("convert_coroutines_with_out_of_order", {"convert", "-W", "-m", "1", "src", "out"});
  t.add("convert_coroutines_bad_no_files", {"convert", "-m", "0"});
  for (const char* s : {"0", "511", "512", "-1", "1k", "abc", "0x200", "32M", "16M", "", "16E", "9E", "4k ", "1.5k"})
    t.add_named_by_args("convert_sparse", {"convert", "-S", s, "src", "out"}, 2);
  t.add("convert_sparse_bad_no_files", {"convert", "-S", "abc"});
}

void check_rows(Table& t) {
  t.add("check_no_file", {"check"});
  t.add("check_two_files", {"check", "q2", "q2"});
  t.add("check_qcow2", {"check", "q2"});
  t.add("check_raw_unsupported", {"check", "src"});
  t.add("check_missing_file", {"check", "missing"});
  t.add("check_quiet", {"check", "-q", "q2"});
  t.add("check_format", {"check", "-f", "qcow2", "q2"});
  t.add("check_format_raw", {"check", "-f", "raw", "q2"});
  t.add("check_format_unknown", {"check", "-f", "bogus", "q2"});
  t.add("check_format_missing_argument", {"check", "q2", "-f"});
  t.add("check_output_json", {"check", "--output=json", "q2"});
  t.add("check_output_json_separate", {"check", "--output", "json", "q2"});
  t.add("check_output_bad", {"check", "--output=xml", "q2"});
  t.add("check_output_empty", {"check", "--output=", "q2"});
  t.add("check_output_bad_no_file", {"check", "--output=xml"});
  t.add("check_repair_bad", {"check", "-r", "bad", "q2"});
  t.add("check_repair_bad_no_file", {"check", "-r", "bad"});
  t.add("check_repair_empty", {"check", "-r", "", "q2"});
  t.add("check_repair_missing_argument", {"check", "q2", "-r"});
  t.add("check_repair_leaks", {"check", "-r", "leaks", "q2"});
  t.add("check_repair_all_long", {"check", "--repair=all", "q2"});
  t.add("check_repair_abbreviated", {"check", "--rep", "all", "q2"});
  t.add("check_repair_force_share", {"check", "-r", "leaks", "-U", "q2"});
  t.add("check_cache_bad", {"check", "-T", "bogus", "q2"});
  t.add("check_cache_none", {"check", "-T", "none", "q2"});
  t.add("check_force_share", {"check", "-U", "q2"});
  t.add("check_unknown_short", {"check", "-x", "q2"});
  t.add("check_unknown_long", {"check", "--foo", "q2"});
  t.add("check_backing_chain_not_a_check_option", {"check", "--backing-chain", "q2"});
  t.add("check_image_opts", {"check", "--image-opts", "driver=qcow2,file.filename=q2"});
  t.add("check_image_opts_with_format", {"check", "--image-opts", "-f", "qcow2", "q2"});
  t.add("check_quiet_json", {"check", "-q", "--output=json", "q2"});
}

std::vector<CliCase> all_rows() {
  Table t;
  global_rows(t);
  info_rows(t);
  create_rows(t);
  name_rows(t);
  convert_rows(t);
  check_rows(t);
  return t.rows();
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

class CliConformance : public ::testing::TestWithParam<CliCase> {};

TEST_P(CliConformance, SameAsQemu) {
  KEEL_REQUIRE_QEMU();
  const auto& c = GetParam();
  TempDir tmp;
  const std::string qemu_dir = tmp.file("qemu"), keel_dir = tmp.file("keel");
  // The same images in both directories: a raw image with data and an empty qcow2.
  std::filesystem::create_directory(qemu_dir);
  write_file(qemu_dir + "/src", random_bytes(1 << 20, 7));
  const auto made = qemu_img_in(qemu_dir, {"create", "-q", "-f", "qcow2", "q2", "1M"});
  ASSERT_EQ(made.status, 0) << describe("qemu-img create", made);
  std::filesystem::copy(qemu_dir, keel_dir);

  const auto q = qemu_img_in(qemu_dir, c.args);
  const auto k = keel_img_in(keel_dir, c.args);
  const std::string cmd = "[" + join(c.args) + "]";
  EXPECT_EQ(k.status, q.status) << cmd << "\n" << describe("qemu-img", q) << describe("keel-img", k);
  EXPECT_EQ(k.out, q.out) << cmd;
  EXPECT_EQ(k.err, as_keel_stderr(q.err)) << cmd;
  EXPECT_EQ(entries(keel_dir), entries(qemu_dir)) << cmd << ": the files left behind differ";
}

INSTANTIATE_TEST_SUITE_P(Table, CliConformance, ::testing::ValuesIn(all_rows()),
                         [](const ::testing::TestParamInfo<CliCase>& info) { return info.param.name; });

}  // namespace
}  // namespace keel::test::interop
