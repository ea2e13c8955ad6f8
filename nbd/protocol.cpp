#include "nbd/protocol.h"

#include <fmt/format.h>

#include <cerrno>

namespace keel::nbd {

std::string option_name(uint32_t option) {
  switch (static_cast<Option>(option)) {
    case Option::ExportName:
      return "NBD_OPT_EXPORT_NAME";
    case Option::Abort:
      return "NBD_OPT_ABORT";
    case Option::List:
      return "NBD_OPT_LIST";
    case Option::PeekExport:
      return "NBD_OPT_PEEK_EXPORT";
    case Option::StartTls:
      return "NBD_OPT_STARTTLS";
    case Option::Info:
      return "NBD_OPT_INFO";
    case Option::Go:
      return "NBD_OPT_GO";
    case Option::StructuredReply:
      return "NBD_OPT_STRUCTURED_REPLY";
    case Option::ListMetaContext:
      return "NBD_OPT_LIST_META_CONTEXT";
    case Option::SetMetaContext:
      return "NBD_OPT_SET_META_CONTEXT";
    case Option::ExtendedHeaders:
      return "NBD_OPT_EXTENDED_HEADERS";
  }
  return fmt::format("option {}", option);
}

uint32_t nbd_error_from_errno(int err) noexcept {
  switch (err) {
    case 0:
      return 0;
    case EPERM:
    case EACCES:
    case EROFS:
      return error::kPerm;
    case EIO:
      return error::kIo;
    case ENOMEM:
      return error::kNoMem;
    case EINVAL:
      return error::kInval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return error::kNoSpc;
    case EOVERFLOW:
      return error::kOverflow;
    case ENOTSUP:
      return error::kNotSup;  // == EOPNOTSUPP on Linux
    case ESHUTDOWN:
      return error::kShutdown;
    default:
      return error::kInval;
  }
}

}  // namespace keel::nbd
