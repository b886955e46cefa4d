// SPDX-License-Identifier: Apache-2.0
// The README's example, compiled and run by the test suite so that it cannot rot.
#include <leftright/leftright.hpp>

#include <cstdio>
#include <string>
#include <thread>

int main() {
  auto [writer, reader] = leftright::make_map<std::string, int>();
  auto factory = writer.factory();           // hand this to threads: one reader each

  std::jthread server([factory] {
    auto r = factory.make_reader();          // registers this thread's reader
    while (r.version() < 2) {}               // spin until the second batch is out
    auto snap = r.read();                    // a consistent snapshot while `snap` lives
    if (const int* v = snap.find(std::string("b"))) std::printf("b=%d\n", *v);
  });

  writer.insert_or_assign("a", 1);           // queued: no reader sees it yet
  writer.publish();                          // version 1: readers see "a"
  writer.insert_or_assign("b", 2);
  writer.erase("a");
  writer.publish();                          // version 2: "b" appears and "a" goes, together
}
