// Figures of agreement between a float and a quantized model (see quantize/verify.h).
#include "verify/verify.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "graph/dtype.h"
#include "quantize/error.h"

namespace quantize {
namespace {

using onnx::TensorProto;

// log(sum(exp(x - max))) + max over one row.
double log_sum_exp(const std::vector<double>& x) {
  const double m = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  return m + std::log(s);
}

}  // namespace

void MetricsAccumulator::add(const Tensor& reference, const Tensor& candidate) {
  if (reference.is_container() || candidate.is_container()) return;
  if (reference.shape() != candidate.shape()) {
    fail(ExitCode::kInternal, "output '{}': shape changed by quantization", m_.name);
  }
  const int64_t n = reference.size();
  if (!seen_) {
    m_.is_float = is_float_type(reference.dtype());
    m_.logits = m_.is_float && reference.rank() >= 1 && reference.shape().back() >= 2;
    seen_ = true;
  }
  m_.elements += n;
  if (!m_.is_float) {
    for (int64_t i = 0; i < n; ++i) {
      same_ += reference.element_as_double(i) == candidate.element_as_double(i);
    }
    return;
  }
  std::vector<double> f(n), q(n);
  for (int64_t i = 0; i < n; ++i) {
    f[i] = reference.element_as_double(i);
    q[i] = candidate.element_as_double(i);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(q[i])) {
      m_.finite &= !std::isfinite(f[i]);
      continue;
    }
    if (!std::isfinite(f[i])) continue;
    const double e = q[i] - f[i];
    dot_ += f[i] * q[i], ff_ += f[i] * f[i], qq_ += q[i] * q[i], ee_ += e * e;
    m_.max_abs = std::max(m_.max_abs, std::fabs(e));
  }
  if (!m_.logits) return;
  const int64_t last = reference.shape().back();
  for (int64_t base = 0; base + last <= n; base += last) {
    std::vector<double> fr(f.begin() + base, f.begin() + base + last);
    std::vector<double> qr(q.begin() + base, q.begin() + base + last);
    const bool finite =
        std::all_of(fr.begin(), fr.end(), [](double v) { return std::isfinite(v); }) &&
        std::all_of(qr.begin(), qr.end(), [](double v) { return std::isfinite(v); });
    ++m_.rows;
    if (!finite) continue;
    top1_same_ += std::max_element(fr.begin(), fr.end()) - fr.begin() ==
                  std::max_element(qr.begin(), qr.end()) - qr.begin();
    const double lf = log_sum_exp(fr), lq = log_sum_exp(qr);
    double kl = 0;
    for (int64_t k = 0; k < last; ++k) {
      const double lp = fr[k] - lf;
      kl += std::exp(lp) * (lp - (qr[k] - lq));
    }
    kl_sum_ += std::max(kl, 0.0);
  }
}

OutputMetrics MetricsAccumulator::result() const {
  OutputMetrics m = m_;
  if (!m.is_float) {
    m.exact = m.elements ? static_cast<double>(same_) / m.elements : 1;
    return m;
  }
  m.cosine = ff_ > 0 && qq_ > 0 ? dot_ / std::sqrt(ff_ * qq_) : (ff_ == qq_ ? 1 : 0);
  m.rel_l2 = ff_ > 0 ? std::sqrt(ee_ / ff_) : (ee_ > 0 ? INFINITY : 0);
  m.snr_db = ee_ > 0 ? 10 * std::log10(ff_ / ee_) : INFINITY;
  if (m.logits && m.rows) {
    m.top1 = static_cast<double>(top1_same_) / m.rows;
    m.kl = kl_sum_ / m.rows;
  }
  return m;
}

double Verification::worst(const std::string& metric, const std::string& output) const {
  double worst = NAN;
  for (const auto& o : outputs) {
    if (!output.empty() && o.name != output) continue;
    if (!o.is_float) continue;
    double v;
    bool lower_is_worse = true;
    if (metric == "cosine") {
      v = o.cosine;
    } else if (metric == "snr") {
      v = o.snr_db;
    } else if (metric == "top1" && o.logits) {
      v = o.top1;
    } else if (metric == "kl" && o.logits) {
      v = o.kl;
      lower_is_worse = false;
    } else {
      continue;
    }
    if (std::isnan(worst) || (lower_is_worse ? v < worst : v > worst)) worst = v;
  }
  return worst;
}

Reference reference_outputs(const Model& model, const CalibrationData& data) {
  Executor executor(model);
  Reference r;
  r.names = executor.output_names();
  for (size_t i = 0; i < data.count; ++i) r.outputs.push_back(executor.run(data.sample(i)));
  return r;
}

namespace {

// Compares the candidate with reference outputs given per sample by `reference_of`.
Verification compare_runs(
    const std::vector<std::string>& names, const Model& candidate, const CalibrationData& data,
    const std::function<std::vector<Tensor>(size_t, const std::vector<Tensor>&)>& reference_of) {
  Executor executor(candidate);
  if (executor.output_names() != names) {
    fail(ExitCode::kInternal, "the quantized model's outputs are not the float model's");
  }
  std::vector<MetricsAccumulator> acc;
  for (const auto& name : names) acc.emplace_back(name);
  for (size_t i = 0; i < data.count; ++i) {
    const auto inputs = data.sample(i);
    const auto outputs = executor.run(inputs);
    const auto reference = reference_of(i, inputs);
    for (size_t k = 0; k < outputs.size(); ++k) acc[k].add(reference[k], outputs[k]);
  }
  Verification v;
  v.data = data.description;
  v.synthetic = data.synthetic;
  v.samples = data.count;
  for (const auto& a : acc) v.outputs.push_back(a.result());
  return v;
}

}  // namespace

Verification verify(const Model& reference, const Model& candidate, const CalibrationData& data) {
  Executor float_model(reference);
  return compare_runs(
      float_model.output_names(), candidate, data,
      [&](size_t, const std::vector<Tensor>& inputs) { return float_model.run(inputs); });
}

Verification verify(const Reference& reference, const Model& candidate,
                    const CalibrationData& data) {
  return compare_runs(reference.names, candidate, data,
                      [&](size_t i, const std::vector<Tensor>&) { return reference.outputs[i]; });
}

CalibrationData subset(const CalibrationData& data, const std::function<bool(size_t)>& keep,
                       std::string description) {
  auto indices = std::make_shared<std::vector<size_t>>();
  for (size_t i = 0; i < data.count; ++i) {
    if (keep(i)) indices->push_back(i);
  }
  CalibrationData out;
  out.description = std::move(description);
  out.synthetic = data.synthetic;
  out.count = indices->size();
  out.sample = [indices, sample = data.sample](size_t i) { return sample((*indices)[i]); };
  return out;
}

}  // namespace quantize
