// How many threads the library's loops use (kernels, the executor, the writer).
#pragma once

namespace quantize {

// 0 (the default) means one per hardware thread.
void set_thread_count(unsigned count);
unsigned thread_count();

}  // namespace quantize
