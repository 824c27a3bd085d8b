#include "quantize/threads.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace quantize {
namespace {
std::atomic<unsigned> g_threads{0};
}  // namespace

void set_thread_count(unsigned count) { g_threads = count; }

unsigned thread_count() {
  unsigned n = g_threads.load();
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  return n;
}

void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t chunks = (n + grain - 1) / grain;
  const size_t workers = std::min<size_t>(thread_count(), chunks);
  if (workers <= 1) {
    body(0, n);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (size_t c; (c = next.fetch_add(1)) < chunks;) {
      try {
        body(c * grain, std::min(n, (c + 1) * grain));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = chunks;
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (size_t i = 1; i < workers; ++i) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace quantize
