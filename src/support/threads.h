// Data-parallel loops. Work is split into fixed chunks that do not depend on the thread count,
// so results that are written per index are identical whatever the number of threads.
#pragma once

#include <cstddef>
#include <functional>

#include "quantize/threads.h"

namespace quantize {

// Calls body(begin, end) over [0, n) in chunks of `grain` indices, spread over the threads.
// Exceptions from body are rethrown in the caller (the first one wins).
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body);

}  // namespace quantize
