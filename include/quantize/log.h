// Diagnostics go through spdlog: warnings, progress detail and debug output on stderr, never
// mixed with the report (stdout). The library logs to the logger named "quantize"; a program may
// replace its sinks or level.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace quantize {

// The library's logger (created on first use: stderr, "quantize: warning: ..." lines).
spdlog::logger& log();
// trace, debug, info, warn, error, critical or off; throws Error(kUsage) on another name.
void set_log_level(const std::string& level);

}  // namespace quantize
