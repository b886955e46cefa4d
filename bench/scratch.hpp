// SPDX-License-Identifier: Apache-2.0
// Scratch directories for the benchmarks that write files (the durable ones, and the replication
// executable's local baseline): where they go, and what file system that is.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

namespace lrbench {

namespace fs = std::filesystem;

/// Where the durable benchmarks put their files: $LEFTRIGHT_BENCH_DIR if set (scripts/bench sets
/// it to build/release/bench-files, on the repository's file system), else the current
/// directory. Not /tmp by default: it may be a tmpfs, where fdatasync costs nothing.
inline fs::path scratch_root() {
  const char* env = std::getenv("LEFTRIGHT_BENCH_DIR");
  return fs::absolute((env != nullptr && *env != '\0') ? fs::path(env) : fs::current_path());
}

/// The file system path is (or would be) on, as "<type> on <device> (mounted at <dir>)" from
/// /proc/self/mounts: the longest mount point that is a prefix of path's nearest existing
/// ancestor. "unknown" if /proc is not there.
inline std::string fs_description(const fs::path& path) {
  fs::path existing = fs::absolute(path);
  std::error_code ec;
  while (!fs::exists(existing, ec) && existing.has_parent_path() && existing != existing.parent_path()) {
    existing = existing.parent_path();
  }
  const std::string p = fs::weakly_canonical(existing, ec).string();
  std::ifstream mounts("/proc/self/mounts");
  std::string line, best_dir, best = "unknown";
  while (std::getline(mounts, line)) {
    std::istringstream in(line);
    std::string dev, dir, type;
    if (!(in >> dev >> dir >> type)) continue;
    const bool prefix = p == dir || (p.starts_with(dir) && (dir == "/" || p[dir.size()] == '/'));
    if (prefix && dir.size() >= best_dir.size()) {
      best_dir = dir;
      best = type + " on " + dev + " (mounted at " + dir + ")";
    }
  }
  return best;
}

/// The file system type alone ("ext4", "tmpfs", ...).
inline std::string fs_type(const fs::path& path) {
  const std::string d = fs_description(path);
  return d.substr(0, d.find(' '));
}

/// A fresh directory under scratch_root(), removed with everything in it when destroyed.
class scratch_dir {
 public:
  explicit scratch_dir(std::string_view tag) {
    static unsigned counter = 0;
    path_ = scratch_root() / ("lrbench-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
                              "-" + std::string(tag));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const noexcept { return path_; }

 private:
  fs::path path_;
};

}  // namespace lrbench
