// SPDX-License-Identifier: Apache-2.0
// leftright: storage_error, the one exception type of the durability layer. Every failed file
// operation (open, fallocate, mmap, msync, rename, ...) and every input that does not decode
// (a truncated or corrupt record, a file written with other key/value types) throws it.
#pragma once

#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace leftright {

namespace detail {

// strerror_r comes in two flavours; overloading on its return type picks the right reading.
// GNU: returns the message (maybe a static string, maybe buf).
inline std::string strerror_result(const char* message, const char* /*buf*/, int err) {
  return message != nullptr ? std::string(message) : "unknown error " + std::to_string(err);
}
// XSI: returns 0 and fills buf, or an error number.
inline std::string strerror_result(int rc, const char* buf, int err) {
  return rc == 0 ? std::string(buf) : "unknown error " + std::to_string(err);
}

/// The text of an errno value, like strerror() but thread-safe.
inline std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(::strerror_r(err, buf, sizeof buf), buf, err);
}

}  // namespace detail

/// A failed storage operation, or bytes that do not decode.
/// what() reads `leftright: <operation> '<path>': <strerror(err)>: <detail>`; the strerror part
/// is left out when err == 0, the detail part when detail is empty, and the quoted path when the
/// path is empty (decoding errors: `leftright: decode: truncated input: ...`).
/// Copying never throws (the fields are shared, as std::runtime_error shares its message).
/// Thread-safety: like any immutable value.
class storage_error : public std::runtime_error {
 public:
  /// path: the file or directory concerned (empty if none); operation: what was being done
  /// ("open", "msync", "decode", ...); err: the errno value, 0 if there is none; detail: more
  /// context (which record, which offset, what was expected).
  storage_error(std::filesystem::path path, std::string operation, int err,
                std::string detail = {})
      : std::runtime_error(message(path, operation, err, detail)),
        fields_(std::make_shared<const fields>(
            fields{std::move(path), std::move(operation), std::move(detail), err})) {}

  /// The file or directory concerned; empty if none (e.g. decoding a buffer).
  const std::filesystem::path& path() const noexcept { return fields_->path; }
  /// What was being done: "open", "fallocate", "mmap", "msync", "rename", "decode", ...
  const std::string& operation() const noexcept { return fields_->operation; }
  /// The errno value as an error_code in std::generic_category(); value 0 if there was none.
  std::error_code code() const noexcept { return {fields_->err, std::generic_category()}; }
  /// Extra context; may be empty.
  const std::string& detail() const noexcept { return fields_->detail; }

 private:
  struct fields {
    std::filesystem::path path;
    std::string operation;
    std::string detail;
    int err;
  };

  static std::string message(const std::filesystem::path& path, const std::string& operation,
                             int err, const std::string& extra) {
    std::string m = "leftright: ";
    m += operation;
    if (!path.empty()) {
      m += " '";
      m += path.string();
      m += '\'';
    }
    if (err != 0) {
      m += ": ";
      m += detail::errno_text(err);
    }
    if (!extra.empty()) {
      m += ": ";
      m += extra;
    }
    return m;
  }

  std::shared_ptr<const fields> fields_;
};

}  // namespace leftright
