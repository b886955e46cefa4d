// SPDX-License-Identifier: Apache-2.0
// Builds against the installed package and checks a publish is seen, and that the installed
// version header says the version the package says (LEFTRIGHT_EXPECTED_VERSION, from
// find_package or pkg-config).
#include <leftright/leftright.hpp>

#include <cstdio>
#include <string>

#ifndef LEFTRIGHT_EXPECTED_VERSION
#error "build with -DLEFTRIGHT_EXPECTED_VERSION=\"<the package's version>\""
#endif

int main() {
  if (std::string(LEFTRIGHT_VERSION_STRING) != LEFTRIGHT_EXPECTED_VERSION) {
    std::printf("consumer: version.hpp says %s, the package %s\n", LEFTRIGHT_VERSION_STRING,
                LEFTRIGHT_EXPECTED_VERSION);
    return 1;
  }
  auto [writer, reader] = leftright::make_map<std::string, int>();
  writer.insert_or_assign("answer", 42);
  if (reader.get(std::string("answer"))) return 1;  // not yet published
  writer.publish();
  const auto v = reader.get(std::string("answer"));
  std::printf("consumer %s: answer=%d version=%llu\n", LEFTRIGHT_VERSION_STRING, v.value_or(-1),
              static_cast<unsigned long long>(reader.version()));
  return v == 42 && reader.version() == 1 ? 0 : 1;
}
