// SPDX-License-Identifier: Apache-2.0
// leftright tests: a file system over another whose mappings' syncs go through one hook, for the
// tests that make a sync of the log fail, or pause inside one. Everything else is forwarded.
#pragma once

#include <leftright/durable_map.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lrtest {

/// Forwards to inner; a mapping's sync(off, len) calls sync_mapping(real mapping, off, len),
/// which a test overrides. The file system must outlive the files and mappings it hands out.
class mapping_sync_fs : public leftright::detail::storage::file_system {
 public:
  using file_system = leftright::detail::storage::file_system;
  explicit mapping_sync_fs(std::shared_ptr<file_system> inner) : inner_(std::move(inner)) {}

  /// Syncs m's range; by default, just that.
  virtual void sync_mapping(leftright::detail::storage::mapping& m, std::size_t off, std::size_t len) {
    m.sync(off, len);
  }

  std::unique_ptr<leftright::detail::storage::file> open(const std::filesystem::path& p,
                                                         leftright::detail::storage::open_mode mode) override {
    return std::make_unique<file>(inner_->open(p, mode), *this);
  }
  std::vector<std::filesystem::path> create_directories(const std::filesystem::path& d) override {
    return inner_->create_directories(d);
  }
  std::vector<std::string> list(const std::filesystem::path& d) override { return inner_->list(d); }
  void rename(const std::filesystem::path& a, const std::filesystem::path& b) override { inner_->rename(a, b); }
  void remove(const std::filesystem::path& p) override { inner_->remove(p); }
  void sync_directory(const std::filesystem::path& d) override { inner_->sync_directory(d); }
  std::unique_ptr<leftright::detail::storage::lock_handle> lock_directory(const std::filesystem::path& d) override {
    return inner_->lock_directory(d);
  }
  std::unique_ptr<leftright::detail::storage::lock_handle> lock_directory_shared(
      const std::filesystem::path& d) override {
    return inner_->lock_directory_shared(d);
  }

 private:
  struct mapping final : leftright::detail::storage::mapping {
    mapping(std::shared_ptr<leftright::detail::storage::mapping> m, mapping_sync_fs& f) : real(std::move(m)), fs(f) {}
    std::shared_ptr<leftright::detail::storage::mapping> real;
    mapping_sync_fs& fs;
    std::byte* data() noexcept override { return real->data(); }
    std::size_t size() const noexcept override { return real->size(); }
    void sync(std::size_t off, std::size_t len) override { fs.sync_mapping(*real, off, len); }
  };
  struct file final : leftright::detail::storage::file {
    file(std::unique_ptr<leftright::detail::storage::file> f, mapping_sync_fs& s) : real(std::move(f)), fs(s) {}
    std::unique_ptr<leftright::detail::storage::file> real;
    mapping_sync_fs& fs;
    const std::filesystem::path& path() const noexcept override { return real->path(); }
    std::uint64_t size() override { return real->size(); }
    void write_at(const void* p, std::size_t n, std::uint64_t o) override { real->write_at(p, n, o); }
    std::size_t read_at(void* p, std::size_t n, std::uint64_t o) override { return real->read_at(p, n, o); }
    void allocate(std::uint64_t l) override { real->allocate(l); }
    void sync() override { real->sync(); }
    std::shared_ptr<leftright::detail::storage::mapping> map(std::size_t l, bool w) override {
      return std::make_shared<mapping>(real->map(l, w), fs);
    }
  };

  std::shared_ptr<file_system> inner_;
};

}  // namespace lrtest
