// SPDX-License-Identifier: Apache-2.0
// One child process, for the tests that need a real one (a kill -9 at a chosen moment, a file
// size limit, dropped privileges, a second process trying a lock) and for the soak: started by
// fork() running a function, or by posix_spawn() of a program, with a pipe from the child to the
// parent. The parent reads what the child writes (up to a deadline, or to the end of the pipe),
// sends it a signal, and reaps it; exit_status says how it ended.
//
// Contract:
//   - child_process::fork(body): the child runs body(fd), fd being the pipe's write end, and
//     leaves through _exit() with body's return value as its exit code; an exception escaping
//     body writes "unexpected exception: <what>" to the pipe and exits 3. The child never returns
//     into the caller, so never into Catch2: body must not use Catch2. Fork only while the
//     process has one thread (the child gets only the calling one). Buffered stdio is flushed
//     first, so nothing is written twice. alarm_seconds > 0: SIGALRM ends a child still running
//     after that long (a hang shows as a signal).
//   - child_process::spawn(path, args, child_fd): a fresh process image (not a fork() of a
//     process that may have threads), args[0] being its argv[0], with the pipe's write end as
//     descriptor child_fd and no other descriptor of ours.
//   - read_some() waits for bytes up to a deadline; read_to_end() reads until every writer of the
//     pipe is gone. kill_and_wait() sends a signal and reaps the child (one that has already
//     exited is a zombie until reaped: the signal does no harm). A child_process destroyed with
//     its child unreaped SIGKILLs and reaps it: a failed assertion leaves no process behind.
//   - Failed system calls throw std::system_error. No Catch2 in here.
//   - Records: send_record() writes a trivially copyable record in one write(); up to PIPE_BUF
//     bytes that is atomic in a pipe, so a kill never leaves half a record. take_records()
//     decodes the whole records at the front of a buffer and keeps a partial one for later.
// No atomics in this file.
#pragma once

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

extern char** environ;

namespace lrtest {

/// How a child ended: waitpid()'s status.
struct exit_status {
  int raw = 0;
  bool exited(int code) const { return WIFEXITED(raw) && WEXITSTATUS(raw) == code; }
  bool killed_by(int sig) const { return WIFSIGNALED(raw) && WTERMSIG(raw) == sig; }
  std::string describe() const {
    if (WIFEXITED(raw)) return "exited with code " + std::to_string(WEXITSTATUS(raw));
    if (WIFSIGNALED(raw)) {
      return "killed by signal " + std::to_string(WTERMSIG(raw)) + " (" + ::strsignal(WTERMSIG(raw)) + ")";
    }
    return "status " + std::to_string(raw);
  }
};

/// Writes all of s to fd, again after EINTR and short writes; false if the reader is gone.
inline bool put(int fd, std::string_view s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd, s.data() + done, s.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += static_cast<std::size_t>(w);
  }
  return true;
}

/// Writes one record in one write() (atomic in a pipe); false if the reader is gone.
template <class Record>
bool send_record(int fd, const Record& r) {
  static_assert(std::is_trivially_copyable_v<Record> && sizeof(Record) <= PIPE_BUF);
  return put(fd, std::string_view(reinterpret_cast<const char*>(&r), sizeof r));
}

/// Calls on_record for each whole record at the front of buf and removes them; a partial record
/// stays (buf is then not empty).
template <class Record, class OnRecord>
void take_records(std::string& buf, OnRecord&& on_record) {
  static_assert(std::is_trivially_copyable_v<Record>);
  std::size_t used = 0;
  for (; used + sizeof(Record) <= buf.size(); used += sizeof(Record)) {
    Record r;
    std::memcpy(&r, buf.data() + used, sizeof r);
    on_record(r);
  }
  buf.erase(0, used);
}

/// The record the crash tests' children send: what happened (kind) and a number (value). 16
/// bytes, so atomic in a pipe.
struct report {
  std::uint64_t kind;
  std::uint64_t value;
};

class child_process {
 public:
  using clock = std::chrono::steady_clock;
  /// What read_some() found: bytes, the deadline, or the end of the pipe (the child is gone).
  enum class read_state { data, timeout, end };

  /// Forks a child that runs body(write_fd) and exits with its return value (see the contract).
  static child_process fork(const std::function<int(int)>& body, unsigned alarm_seconds = 0) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    std::fflush(nullptr);  // nothing buffered in the parent gets written twice
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      throw std::system_error(err, std::generic_category(), "fork");
    }
    if (pid == 0) {
      ::close(fds[0]);
      if (alarm_seconds != 0) ::alarm(alarm_seconds);
      ::_exit(run_body(body, fds[1]));
    }
    ::close(fds[1]);
    return child_process(pid, fds[0]);
  }

  /// Starts path with args (args[0]: its argv[0]) and the pipe's write end as child_fd.
  static child_process spawn(const std::string& path, std::vector<std::string> args, int child_fd) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    // Keep the write end off child_fd, so that dup2() onto it in the child makes a fresh
    // descriptor without FD_CLOEXEC.
    const int wfd = ::fcntl(fds[1], F_DUPFD_CLOEXEC, child_fd + 1);
    ::close(fds[1]);
    if (wfd < 0) {
      const int err = errno;
      ::close(fds[0]);
      throw std::system_error(err, std::generic_category(), "fcntl");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, wfd, child_fd);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, path.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(wfd);
    if (rc != 0) {
      ::close(fds[0]);
      throw std::system_error(rc, std::generic_category(), "posix_spawn " + path);
    }
    return child_process(pid, fds[0]);
  }

  child_process(child_process&& o) noexcept : pid_(o.pid_), fd_(o.fd_) {
    o.pid_ = -1;
    o.fd_ = -1;
  }
  child_process& operator=(child_process&&) = delete;
  ~child_process() {
    if (pid_ > 0) kill_and_wait(SIGKILL);
    if (fd_ >= 0) ::close(fd_);
  }

  pid_t pid() const noexcept { return pid_; }

  /// Appends to out what the child wrote, waiting for it until deadline at the most.
  read_state read_some(std::string& out, clock::time_point deadline) {
    while (true) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
      if (left <= 0) return read_state::timeout;
      pollfd p{fd_, POLLIN, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::system_error(errno, std::generic_category(), "poll");
      if (n == 0) return read_state::timeout;
      if (read_once(out)) return read_state::data;
      return read_state::end;
    }
  }

  /// Appends to out everything the child (and whatever inherited the pipe) still writes.
  void read_to_end(std::string& out) {
    while (read_once(out)) {
    }
  }

  /// Sends sig (if the child is not reaped yet), then reaps it.
  exit_status kill_and_wait(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
    return wait();
  }

  /// Waits for the child to end and reaps it (once: later calls return the same status).
  exit_status wait() {
    if (pid_ > 0) {
      while (::waitpid(pid_, &status_.raw, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    return status_;
  }

 private:
  child_process(pid_t pid, int fd) : pid_(pid), fd_(fd) {}

  static int run_body(const std::function<int(int)>& body, int fd) {
    try {
      return body(fd);
    } catch (const std::exception& e) {
      put(fd, std::string("unexpected exception: ") + e.what());
    } catch (...) {
    }
    return 3;
  }

  /// One read() into out; false at the end of the pipe (or an error other than EINTR).
  bool read_once(std::string& out) {
    char chunk[8192];
    while (true) {
      const ssize_t got = ::read(fd_, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      out.append(chunk, static_cast<std::size_t>(got));
      return true;
    }
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  exit_status status_;
};

/// What run_in_child() saw: how the child ended and everything it wrote to the pipe.
struct child_result {
  exit_status status;
  std::string out;
  bool exited(int code) const { return status.exited(code); }
  std::string describe() const { return status.describe() + "; said: " + out; }
};

/// Runs body(fd) in a forked child to its end (child_process::fork's contract; a child still
/// running after alarm_seconds gets SIGALRM).
inline child_result run_in_child(const std::function<int(int)>& body, unsigned alarm_seconds = 60) {
  child_process c = child_process::fork(body, alarm_seconds);
  child_result res;
  c.read_to_end(res.out);
  res.status = c.wait();
  return res;
}

}  // namespace lrtest
