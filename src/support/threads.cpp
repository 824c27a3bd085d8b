// parallel_for over a persistent pool: workers sleep on a condition variable between loops, so a
// loop costs a wake-up, not a thread start (the executor runs hundreds of small loops per model).
// A loop started from inside a pool worker runs inline.
#include "support/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace quantize {
namespace {

std::atomic<unsigned> g_threads{0};
thread_local bool t_in_pool = false;

class Pool {
 public:
  explicit Pool(size_t workers) {
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  size_t size() const { return threads_.size(); }

  // Runs work() on `helpers` workers and the caller; returns when all have finished.
  void run(size_t helpers, const std::function<void()>& work) {
    std::unique_lock<std::mutex> lock(mutex_);
    work_ = &work;
    pending_ = std::min(helpers, threads_.size());
    running_ = pending_;
    unfinished_.store(pending_, std::memory_order_relaxed);
    ++generation_;
    published_.store(generation_, std::memory_order_release);
    lock.unlock();
    wake_.notify_all();
    t_in_pool = true;
    work();
    t_in_pool = false;
    for (int spin = 0; spin < 4000 && unfinished_.load(std::memory_order_acquire) != 0; ++spin) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    lock.lock();
    done_.wait(lock, [&] { return running_ == 0; });
    work_ = nullptr;
  }

 private:
  void loop() {
    t_in_pool = true;
    size_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      // Loops come in bursts (one per op): poll a few microseconds before sleeping, as a
      // futex wake-up costs more than many small loops take.
      lock.unlock();
      for (int spin = 0; spin < 4000 && published_.load(std::memory_order_acquire) == seen;
           ++spin) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      lock.lock();
      wake_.wait(lock, [&] { return stop_ || (generation_ != seen && pending_ > 0); });
      if (stop_) return;
      seen = generation_;
      --pending_;
      const std::function<void()>* work = work_;
      lock.unlock();
      (*work)();
      unfinished_.fetch_sub(1, std::memory_order_release);
      lock.lock();
      if (--running_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void()>* work_ = nullptr;
  size_t pending_ = 0, running_ = 0, generation_ = 0;
  std::atomic<size_t> published_{0};   // generation_, readable without the lock
  std::atomic<size_t> unfinished_{0};  // helpers of the current loop still working
  bool stop_ = false;
};

std::mutex g_pool_mutex;  // one loop at a time uses the pool; others run inline
std::unique_ptr<Pool> g_pool;

}  // namespace

void set_thread_count(unsigned count) { g_threads = count; }

unsigned thread_count() {
  // hardware_concurrency() reads /sys on every call (glibc): ask once.
  static const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned n = g_threads.load();
  return n == 0 ? cores : n;
}

void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  const size_t chunks = (n + grain - 1) / grain;
  const size_t workers = std::min<size_t>(thread_count(), chunks);
  std::unique_lock<std::mutex> pool_lock(g_pool_mutex, std::defer_lock);
  if (workers <= 1 || t_in_pool || !pool_lock.try_lock()) {
    for (size_t c = 0; c < chunks; ++c) body(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  if (!g_pool || g_pool->size() != thread_count() - 1)
    g_pool = std::make_unique<Pool>(thread_count() - 1);
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  const std::function<void()> work = [&] {
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
  g_pool->run(workers - 1, work);
  if (error) std::rethrow_exception(error);
}

}  // namespace quantize
