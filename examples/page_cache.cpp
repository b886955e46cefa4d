// SPDX-License-Identifier: Apache-2.0
// examples/page_cache.cpp: a bounded cache of rendered pages, on leftright::cache.
//
// The scenario: a web server renders pages (expensive) and keeps the rendered HTML in memory,
// bounded by bytes, not by count: pages differ in size by two orders of magnitude. The cache
// weighs each page by its length and keeps the total under the bound; its policy (W-TinyLFU)
// keeps the popular pages through crawlers' scans of the long tail. A removal listener counts
// what was evicted; editing a page invalidates it.
//
// It prints the hit ratio, renders, evictions and the bytes held, and exits 1 if the bytes held
// ever exceeded the bound after a write, or a page served was not the one asked for.
//
// Usage: leftright_page_cache_example [requests] (default 200000)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <leftright/cache.hpp>

namespace {

/// Renders page `id`: a header naming it, padded to a size that depends on the page.
std::string render(std::uint64_t id) {
  const std::size_t size = 200 + (id * 2654435761u) % 8'000;
  std::string html = "<html><!-- page " + std::to_string(id) + " -->";
  html.resize(size, ' ');
  return html;
}

bool is_page(const std::string& html, std::uint64_t id) {
  return html.rfind("<html><!-- page " + std::to_string(id) + " -->", 0) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const long requests = argc > 1 ? std::atol(argv[1]) : 200000;
  if (requests <= 0) {
    std::fprintf(stderr, "usage: %s [requests > 0]\n", argv[0]);
    return 2;
  }
  constexpr std::uint64_t bound = 8 << 20;  // 8 MiB of HTML
  leftright::cache<std::uint64_t, std::string> pages(
      {.max_weight = bound}, [](const std::uint64_t&, const std::string& html) { return html.size(); });
  long evicted = 0, renders = 0, wrong = 0, over = 0;
  pages.set_removal_listener([&](const std::uint64_t&, const std::string&, leftright::removal_cause why) {
    if (why == leftright::removal_cause::evicted) ++evicted;
  });

  std::uint64_t x = 42;
  for (long i = 0; i < requests; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    std::uint64_t id;
    if (i % 10 == 9) {
      id = 1'000'000 + static_cast<std::uint64_t>(i);  // a crawler: each page once
    } else {
      const std::uint64_t a = (x >> 40) % 10'000, b = (x >> 20) % 10'000, c = (x >> 4) % 10'000;
      id = std::min({a, b, c});  // readers: popular pages more often
    }
    const std::string html = pages.get_or_load(id, [&](const std::uint64_t& p) {
      ++renders;
      return render(p);
    });
    if (!is_page(html, id)) ++wrong;
    if (i % 1000 == 0) {
      pages.invalidate(id);  // the page was edited
      if (pages.weighted_size() > bound) ++over;
    }
  }
  pages.run_pending();
  const leftright::cache_stats s = pages.stats();
  std::printf("requests   %ld\n", requests);
  std::printf("hit ratio  %.2f%%\n", 100 * s.hit_ratio());
  std::printf("renders    %ld, evictions %ld (listener) / %llu (stats)\n", renders, evicted,
              static_cast<unsigned long long>(s.evictions));
  std::printf("held       %llu bytes in %zu pages (bound %llu)\n",
              static_cast<unsigned long long>(pages.weighted_size()), pages.size(),
              static_cast<unsigned long long>(bound));
  std::printf("wrong pages %ld, over the bound %ld\n", wrong, over);
  return wrong == 0 && over == 0 && pages.weighted_size() <= bound ? 0 : 1;
}
