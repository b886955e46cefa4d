// SPDX-License-Identifier: Apache-2.0
// Replays a key stream (one decimal key per line on stdin, as `leftright_cachesim --dump_keys`
// prints it) through the real Caffeine library and prints the hit ratio: maximumSize(N), a
// same-thread executor (maintenance right after every operation), getIfPresent then put on a
// miss. The traces README's Caffeine column was made this way with Debian's libcaffeine-java.
//   leftright_cachesim --trace PATH --dump_keys | java -cp /usr/share/java/caffeine.jar \
//       bench/caffeine/CaffeineReplay.java SIZE
import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;

public final class CaffeineReplay {
  public static void main(String[] args) throws IOException {
    long size = Long.parseLong(args[0]);
    Cache<Long, Boolean> cache = Caffeine.newBuilder().maximumSize(size).executor(Runnable::run).build();
    long hits = 0;
    long requests = 0;
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in), 1 << 16);
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      Long key = Long.parseUnsignedLong(line.trim());
      ++requests;
      if (cache.getIfPresent(key) != null) {
        ++hits;
      } else {
        cache.put(key, Boolean.TRUE);
      }
    }
    System.out.printf("caffeine size %d: %.2f%% (%d hits / %d requests)%n", size,
        requests == 0 ? 0.0 : 100.0 * hits / requests, hits, requests);
  }
}
