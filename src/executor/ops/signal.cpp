// Signal ops (opset 17): HannWindow, HammingWindow, BlackmanWindow, DFT and STFT. Transforms
// are direct sums in double (O(n^2) per signal): exact to float precision, not fast.
#include <cmath>
#include <complex>

#include "executor/core/ops.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// A window of `size` values, w[n] = a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N) with N = size
// (periodic, the default) or size - 1 (symmetric).
template <int kKind>
void window_op(OpContext& c) {
  constexpr double kCoefficients[3][3] = {
      {0.5, 0.5, 0.0},                    // Hann
      {25.0 / 46, 1.0 - 25.0 / 46, 0.0},  // Hamming, alpha = 25/46
      {0.42, 0.5, 0.08},                  // Blackman
  };
  const double* a = kCoefficients[kKind];
  const int64_t size = c.input(0).to_int64().at(0);
  if (size < 0) c.fail("size {} is negative", size);
  const int dtype = static_cast<int>(c.attr_int("output_datatype", TensorProto::FLOAT));
  const double n_total =
      c.attr_int("periodic", 1) != 0 ? static_cast<double>(size) : static_cast<double>(size - 1);
  Tensor out(dtype, {size});
  with_type(c, dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t n = 0; n < size; ++n) {
      const double t = n_total > 0 ? 2.0 * M_PI * static_cast<double>(n) / n_total : 0.0;
      out.data<T>()[n] = static_cast<T>(a[0] - a[1] * std::cos(t) + a[2] * std::cos(2 * t));
    }
  });
  c.output(0) = std::move(out);
}

// The first `bins` values of the DFT of x, out[k] = sum_n x[n] e^(-+2 pi i k n / n_total)
// (/ n_total when inverse), written as (real, imaginary) float pairs `stride` pairs apart.
void transform(const std::vector<std::complex<double>>& x, int64_t bins, bool inverse, float* out,
               int64_t stride) {
  const int64_t n = static_cast<int64_t>(x.size());
  const double sign = inverse ? 1.0 : -1.0;
  for (int64_t k = 0; k < bins; ++k) {
    std::complex<double> acc = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const double angle =
          sign * 2.0 * M_PI * static_cast<double>((k * j) % n) / static_cast<double>(n);
      acc += x[j] * std::complex<double>(std::cos(angle), std::sin(angle));
    }
    if (inverse) acc /= static_cast<double>(n);
    out[k * stride * 2] = static_cast<float>(acc.real());
    out[k * stride * 2 + 1] = static_cast<float>(acc.imag());
  }
}

// DFT: along `axis` of a [batch, ..., 1 or 2] signal (real, or complex pairs), zero-padded or cut
// to dft_length; onesided keeps the first length / 2 + 1 bins of a real signal's transform.
void dft(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "input");
  const int64_t rank = x.rank();
  if (rank < 3 || (x.shape().back() != 1 && x.shape().back() != 2))
    c.fail("input must be [batch, ..., 1 or 2]");
  // Opset 20 made the axis an input (default -2).
  const int64_t given =
      c.opset >= 20 ? (c.has_input(2) && c.input(2).size() > 0 ? c.input(2).to_int64().at(0) : -2)
                    : c.attr_int("axis", 1);
  int64_t axis = given < 0 ? given + rank : given;
  if (axis < 1 || axis >= rank - 1) c.fail("axis {} is not a signal axis", given);
  const int64_t in_len = x.shape()[axis];
  const int64_t length =
      c.has_input(1) && c.input(1).size() > 0 ? c.input(1).to_int64().at(0) : in_len;
  const bool inverse = c.attr_int("inverse", 0) != 0, onesided = c.attr_int("onesided", 0) != 0;
  if (length < 1) c.fail("dft_length {} is not positive", length);
  const int64_t bins = onesided ? length / 2 + 1 : length;
  const bool complex_in = x.shape().back() == 2;
  std::vector<int64_t> shape = x.shape();
  shape[axis] = bins;
  shape.back() = 2;
  Tensor out(TensorProto::FLOAT, shape);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < rank - 1; ++i) inner *= x.shape()[i];
  const int64_t cw = x.shape().back();
  std::vector<std::complex<double>> signal;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      signal.assign(static_cast<size_t>(length), 0.0);
      for (int64_t j = 0; j < std::min(length, in_len); ++j) {
        const float* p = x.data<float>() + ((o * in_len + j) * inner + in) * cw;
        signal[j] = {p[0], complex_in ? p[1] : 0.0f};
      }
      transform(signal, bins, inverse, out.data<float>() + (o * bins * inner + in) * 2, inner);
    }
  }
  c.output(0) = std::move(out);
}

// STFT: frames of frame_length (or the window's length) every frame_step samples of a
// [batch, length, 1 or 2] signal, each times the window (when given) and transformed; onesided
// (the default) keeps frame_length / 2 + 1 bins. Output [batch, frames, bins, 2].
void stft(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "signal");
  if (x.rank() != 3 || (x.shape()[2] != 1 && x.shape()[2] != 2))
    c.fail("signal must be [batch, length, 1 or 2]");
  const int64_t step = c.input(1).to_int64().at(0);
  const Tensor* window = c.has_input(2) && c.input(2).size() > 0 ? &c.input(2) : nullptr;
  if (window) require_float(c, *window, "window");
  const int64_t frame = c.has_input(3) && c.input(3).size() > 0 ? c.input(3).to_int64().at(0)
                        : window                                ? window->size()
                                                                : 0;
  if (frame < 1 || step < 1)
    c.fail("frame_length {} and frame_step {} must be positive", frame, step);
  if (window && window->size() != frame)
    c.fail("the window has {} values for frames of {}", window->size(), frame);
  const int64_t batch = x.shape()[0], len = x.shape()[1], cw = x.shape()[2];
  if (len < frame) c.fail("the signal ({}) is shorter than a frame ({})", len, frame);
  const bool onesided = c.attr_int("onesided", 1) != 0;
  if (onesided && cw == 2) c.fail("onesided is for real signals");
  const int64_t frames = (len - frame) / step + 1, bins = onesided ? frame / 2 + 1 : frame;
  Tensor out(TensorProto::FLOAT, {batch, frames, bins, 2});
  std::vector<std::complex<double>> signal(static_cast<size_t>(frame));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t f = 0; f < frames; ++f) {
      for (int64_t j = 0; j < frame; ++j) {
        const float* p = x.data<float>() + (b * len + f * step + j) * cw;
        const double w = window ? window->data<float>()[j] : 1.0;
        signal[j] = {p[0] * w, cw == 2 ? p[1] * w : 0.0};
      }
      transform(signal, bins, false, out.data<float>() + (b * frames + f) * bins * 2, 1);
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_signal(Registry& r) {
  r["HannWindow"] = window_op<0>;
  r["HammingWindow"] = window_op<1>;
  r["BlackmanWindow"] = window_op<2>;
  r["DFT"] = dft;
  r["STFT"] = stft;
}

}  // namespace quantize::exec
