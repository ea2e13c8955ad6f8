// The constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md,
// including the extended-headers extension): magics, flags, option and reply
// codes, info types, commands, chunk types and error values. Names follow the
// spec with the NBD_ prefix and group dropped (NBD_OPT_GO -> Option::Go).
// Flags are plain constants so they combine with | without casts; codes that
// name one of a closed set are enum classes.
#pragma once

#include <cstdint>
#include <string>

namespace keel::nbd {

// Magic numbers, all sent big-endian.
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;  // "NBDMAGIC"
inline constexpr uint64_t kIHaveOpt = 0x49484156454f5054;  // "IHAVEOPT": newstyle greeting and every option
inline constexpr uint64_t kOptionReplyMagic = 0x3e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kExtendedRequestMagic = 0x21e41c71;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr uint32_t kExtendedReplyMagic = 0x6e8a278c;

// Handshake flags (16 bits, server -> client after the greeting magics).
namespace handshake_flag {
inline constexpr uint16_t kFixedNewstyle = 1u << 0;
inline constexpr uint16_t kNoZeroes = 1u << 1;
}  // namespace handshake_flag

// Client flags (32 bits, client -> server in reply to the greeting).
namespace client_flag {
inline constexpr uint32_t kFixedNewstyle = 1u << 0;
inline constexpr uint32_t kNoZeroes = 1u << 1;
inline constexpr uint32_t kKnown = kFixedNewstyle | kNoZeroes;
}  // namespace client_flag

// Transmission flags (16 bits, sent with the export size).
namespace transmission_flag {
inline constexpr uint16_t kHasFlags = 1u << 0;
inline constexpr uint16_t kReadOnly = 1u << 1;
inline constexpr uint16_t kSendFlush = 1u << 2;
inline constexpr uint16_t kSendFua = 1u << 3;
inline constexpr uint16_t kRotational = 1u << 4;
inline constexpr uint16_t kSendTrim = 1u << 5;
inline constexpr uint16_t kSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kSendDf = 1u << 7;
inline constexpr uint16_t kCanMultiConn = 1u << 8;
inline constexpr uint16_t kSendResize = 1u << 9;
inline constexpr uint16_t kSendCache = 1u << 10;
inline constexpr uint16_t kSendFastZero = 1u << 11;
inline constexpr uint16_t kBlockStatPayload = 1u << 12;
}  // namespace transmission_flag

enum class Option : uint32_t {
  ExportName = 1,
  Abort = 2,
  List = 3,
  PeekExport = 4,  // withdrawn extension; answered as unsupported
  StartTls = 5,
  Info = 6,
  Go = 7,
  StructuredReply = 8,
  ListMetaContext = 9,
  SetMetaContext = 10,
  ExtendedHeaders = 11,
};

// "NBD_OPT_GO", or "option 42" for codes the spec does not define; for
// messages and close reasons.
std::string option_name(uint32_t option);

// Error replies are the ones with bit 31 set.
inline constexpr uint32_t kReplyErrorBit = 1u << 31;

enum class Reply : uint32_t {
  Ack = 1,
  Server = 2,
  Info = 3,
  MetaContext = 4,
  ErrUnsup = kReplyErrorBit + 1,
  ErrPolicy = kReplyErrorBit + 2,
  ErrInvalid = kReplyErrorBit + 3,
  ErrPlatform = kReplyErrorBit + 4,
  ErrTlsReqd = kReplyErrorBit + 5,
  ErrUnknown = kReplyErrorBit + 6,
  ErrShutdown = kReplyErrorBit + 7,
  ErrBlockSizeReqd = kReplyErrorBit + 8,
  ErrTooBig = kReplyErrorBit + 9,
  ErrExtHeaderReqd = kReplyErrorBit + 10,
};

constexpr bool is_error(Reply r) noexcept { return (static_cast<uint32_t>(r) & kReplyErrorBit) != 0; }

// Information types inside NBD_REP_INFO (and requested by INFO/GO).
enum class Info : uint16_t {
  Export = 0,
  Name = 1,
  Description = 2,
  BlockSize = 3,
};

enum class Command : uint16_t {
  Read = 0,
  Write = 1,
  Disc = 2,
  Flush = 3,
  Trim = 4,
  Cache = 5,
  WriteZeroes = 6,
  BlockStatus = 7,
  Resize = 8,
};

// Command flags (16 bits in every request).
namespace command_flag {
inline constexpr uint16_t kFua = 1u << 0;
inline constexpr uint16_t kNoHole = 1u << 1;
inline constexpr uint16_t kDf = 1u << 2;
inline constexpr uint16_t kReqOne = 1u << 3;
inline constexpr uint16_t kFastZero = 1u << 4;
inline constexpr uint16_t kPayloadLen = 1u << 5;  // extended headers only: length is a payload length
}  // namespace command_flag

// Reply flags (16 bits in structured and extended reply chunks).
namespace reply_flag {
inline constexpr uint16_t kDone = 1u << 0;
}  // namespace reply_flag

// Error chunk types are the ones with bit 15 set.
inline constexpr uint16_t kChunkErrorBit = 1u << 15;

enum class ChunkType : uint16_t {
  None = 0,
  OffsetData = 1,
  OffsetHole = 2,
  BlockStatus = 5,
  BlockStatusExt = 6,
  Error = kChunkErrorBit + 1,
  ErrorOffset = kChunkErrorBit + 2,
};

// base:allocation status flags.
namespace state_flag {
inline constexpr uint32_t kHole = 1u << 0;
inline constexpr uint32_t kZero = 1u << 1;
inline constexpr uint32_t kDirty = 1u << 0;  // of a qemu:dirty-bitmap: context
}  // namespace state_flag

// Error values for the error field of replies and error chunks. They are not
// errno values (the spec fixes them so they are portable), hence the mapping
// below.
namespace error {
inline constexpr uint32_t kPerm = 1;
inline constexpr uint32_t kIo = 5;
inline constexpr uint32_t kNoMem = 12;
inline constexpr uint32_t kInval = 22;
inline constexpr uint32_t kNoSpc = 28;
inline constexpr uint32_t kOverflow = 75;
inline constexpr uint32_t kNotSup = 95;
inline constexpr uint32_t kShutdown = 108;
}  // namespace error

// Maps a host errno (e.g. keel::Error::code()) to the NBD error value to send.
// 0 stays 0. EDQUOT and EFBIG become ENOSPC and EROFS/EACCES become EPERM, as
// the spec recommends; any errno the spec has no value for becomes EINVAL,
// which is also how the spec tells clients to read an unexpected value.
uint32_t nbd_error_from_errno(int err) noexcept;

// Spec limit for every string (export names, context names, messages).
inline constexpr uint32_t kMaxStringLength = 4096;

}  // namespace keel::nbd
