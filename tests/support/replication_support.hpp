// SPDX-License-Identifier: Apache-2.0
// For the replication tests: a real nats-server with JetStream on 127.0.0.1, started in a fresh
// store directory and killed with the test; it can be SIGKILLed, stopped and continued
// (SIGSTOP/SIGCONT: a silent peer) and restarted on the same store and port.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace leftright_test {

/// A TCP port on 127.0.0.1 nobody listens on now (the kernel's pick).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("free_port: no socket");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
inline bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

/// Polls cond every 10 ms until it holds or `limit` passes; returns whether it held. The bound
/// on a wait, never a timing assertion.
template <class Cond>
bool eventually(Cond&& cond, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class nats_server {
 public:
  /// Starts a server with JetStream; max_payload: the largest message it takes (0: default).
  explicit nats_server(std::size_t max_payload = 0) : nats_server(std::vector<std::string>{}, max_payload) {}
  /// Starts a server with JetStream and these further arguments (authentication, TLS).
  explicit nats_server(std::vector<std::string> extra_args, std::size_t max_payload = 0)
      : port_(free_port()), extra_args_(std::move(extra_args)) {
    char tmpl[] = "/tmp/leftright-nats-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    if (max_payload != 0) {
      std::ofstream(dir_ / "server.conf") << "max_payload: " << max_payload << "\n";
    }
    start();
  }
  nats_server(const nats_server&) = delete;
  nats_server& operator=(const nats_server&) = delete;
  ~nats_server() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  /// The directory of its JetStream store (to copy while it is killed, and put back).
  std::filesystem::path store() const { return dir_ / "js"; }

  /// Starts it (again) on the same store and port; returns once it accepts connections.
  void start() {
    std::vector<std::string> args = {LEFTRIGHT_NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", std::to_string(port_),
                                     "-sd", (dir_ / "js").string()};
    if (std::filesystem::exists(dir_ / "server.conf")) {
      args.push_back("-c");
      args.push_back((dir_ / "server.conf").string());
    }
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = (dir_ / "server.log").string();
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
    if (!eventually([&] { return accepts(port_); })) throw std::runtime_error("nats-server did not start");
  }
  /// SIGKILL, and waits for it to be gone.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  /// SIGSTOP, and waits until every thread of it has stopped (delivery is asynchronous).
  void stop_signal() {
    ::kill(pid_, SIGSTOP);
    if (!eventually([&] { return all_threads_stopped(); })) throw std::runtime_error("nats-server did not stop");
  }
  void cont_signal() { ::kill(pid_, SIGCONT); }
  /// SIGHUP: it reads its configuration files again (returns at once; the reload is its own).
  void reload() { ::kill(pid_, SIGHUP); }

 private:
  bool all_threads_stopped() const {
    const std::filesystem::path tasks = "/proc/" + std::to_string(pid_) + "/task";
    for (const auto& t : std::filesystem::directory_iterator(tasks)) {
      std::ifstream in(t.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const auto close = stat.rfind(')');  // the state follows the command name in parentheses
      if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') return false;
    }
    return true;
  }

  int port_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = -1;
  std::filesystem::path dir_;
};

}  // namespace leftright_test
