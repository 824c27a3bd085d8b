#include "quantize/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "quantize/error.h"

namespace quantize {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto existing = spdlog::get("quantize");
    if (existing) return existing;
    auto l = spdlog::stderr_color_mt("quantize");
    l->set_pattern("quantize: %^%l%$: %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return *logger;
}

void set_log_level(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    fail(ExitCode::kUsage,
         "--log-level {}: must be trace, debug, info, warn, error, critical or off", level);
  }
  log().set_level(parsed);
}

}  // namespace quantize
