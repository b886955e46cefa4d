// Builds against the installed package and checks a publish is seen.
#include <leftright/leftright.hpp>

#include <cstdio>
#include <string>

int main() {
  auto [writer, reader] = leftright::make_map<std::string, int>();
  writer.insert_or_assign("answer", 42);
  if (reader.get(std::string("answer"))) return 1;  // not yet published
  writer.publish();
  const auto v = reader.get(std::string("answer"));
  std::printf("consumer: answer=%d version=%llu\n", v.value_or(-1),
              static_cast<unsigned long long>(reader.version()));
  return v == 42 && reader.version() == 1 ? 0 : 1;
}
