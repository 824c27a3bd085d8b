// The one error model: bad input, options or I/O raise quantize::Error with a message that names
// the file, node or tensor. Only main() catches it; it maps the kind to a documented exit code.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace quantize {

// Exit codes of the `quantize` command (also listed in README.md).
enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,  // a bug: an invariant broke
  kUsage = 2,     // bad command line or option values
  kInput = 3,     // a model could not be read, is malformed or unsafe
  kOutput = 4,    // an output could not be written, or exists without --force
  kMismatch = 5,  // `quantize run`: outputs differ from the expected ones beyond tolerance
  kTarget = 6,    // --target could not be met: nothing was written
  kPartial = 7,   // --keep-going: some models failed, the others were written
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

template <typename... Args>
[[noreturn]] void fail(ExitCode code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace quantize
