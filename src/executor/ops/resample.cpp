// Resampling of images, float32: Resize (opset 10+) and Upsample, GridSample, RoiAlign.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "executor/core/ops.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// Resize (opset 10+) and Upsample, one axis at a time (each mode is separable). How each axis maps:
// mode nearest / linear / cubic, the coordinate transformation, nearest rounding, the cubic
// coefficient and exclude_outside, and for tf_crop_and_resize the region of interest and the value
// outside it.
struct ResizeMode {
  std::string mode, coord, nearest;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  std::vector<double> roi;  // [starts..., ends...], tf_crop_and_resize only
  float extrapolation = 0.0f;
};

// Resizes x axis by axis: out[o] = sum over taps of w * in[i] (indices at the edges clamped,
// as ONNX pads with edge values); with scales, or sizes when scales is empty.
Tensor resize_axes(const OpContext& c, const Tensor& x, const std::vector<float>& scales,
                   const std::vector<int64_t>& sizes, const ResizeMode& m) {
  if (m.mode != "nearest" && m.mode != "linear" && m.mode != "cubic")
    c.fail("mode '{}' is not supported", m.mode);
  const int64_t rank = x.rank();
  if (static_cast<int64_t>(sizes.empty() ? scales.size() : sizes.size()) != rank) {
    c.fail("{} scales or sizes for rank {}", sizes.empty() ? scales.size() : sizes.size(), rank);
  }
  Tensor cur = x;
  for (int64_t axis = 0; axis < rank; ++axis) {
    const int64_t in = cur.shape()[axis];
    const int64_t out_len =
        sizes.empty() ? static_cast<int64_t>(std::floor(in * scales[axis])) : sizes[axis];
    const float scale = sizes.empty() ? scales[axis] : static_cast<float>(out_len) / in;
    // The resized length in the coordinate formulas: in * scale when scales are given.
    const double resized =
        sizes.empty() ? static_cast<double>(in) * scale : static_cast<double>(out_len);
    const bool crop = m.coord == "tf_crop_and_resize";
    if (out_len == in && scale == 1.0f && !crop) continue;
    std::vector<int64_t> shape = cur.shape();
    shape[axis] = out_len;
    Tensor next(TensorProto::FLOAT, shape);
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= shape[i];
    // Per output position: its input taps and weights (none when outside a crop), then the
    // copies or sums, output position by position within each outer block.
    std::vector<std::vector<int64_t>> tap_lists(static_cast<size_t>(out_len));
    std::vector<std::vector<double>> weight_lists(static_cast<size_t>(out_len));
    for (int64_t o = 0; o < out_len; ++o) {
      auto& taps = tap_lists[o];
      auto& weights = weight_lists[o];
      double pos;
      if (m.coord == "half_pixel")
        pos = (o + 0.5) / scale - 0.5;
      else if (m.coord == "pytorch_half_pixel")
        pos = out_len > 1 ? (o + 0.5) / scale - 0.5 : 0;
      else if (m.coord == "align_corners")
        pos = resized > 1 ? o * (in - 1.0) / (resized - 1) : 0;
      else if (m.coord == "asymmetric")
        pos = o / scale;
      else if (m.coord == "tf_half_pixel_for_nn")
        pos = (o + 0.5) / scale;
      else if (crop) {
        const double start = m.roi.at(axis), end = m.roi.at(axis + rank);
        pos = out_len > 1 ? start * (in - 1) + o * (end - start) * (in - 1) / (out_len - 1)
                          : 0.5 * (start + end) * (in - 1);
      } else {
        c.fail("coordinate_transformation_mode '{}' is not supported", m.coord);
      }
      const bool outside = crop && (pos < 0 || pos > in - 1);
      if (m.mode == "nearest") {
        int64_t i0;
        if (m.nearest == "floor")
          i0 = static_cast<int64_t>(std::floor(pos));
        else if (m.nearest == "ceil")
          i0 = static_cast<int64_t>(std::ceil(pos));
        else if (m.nearest == "round_prefer_ceil")
          i0 = static_cast<int64_t>(std::floor(pos + 0.5));
        else
          i0 = static_cast<int64_t>(std::ceil(pos - 0.5));  // round_prefer_floor
        taps = {std::clamp<int64_t>(i0, 0, in - 1)}, weights = {1.0};
      } else if (m.mode == "linear") {
        const double p = std::clamp(pos, 0.0, static_cast<double>(in - 1));
        const int64_t i0 = static_cast<int64_t>(std::floor(p));
        taps = {i0, std::min(i0 + 1, in - 1)}, weights = {1 - (p - i0), p - i0};
      } else {  // cubic convolution (Keys), 4 taps around floor(pos)
        const int64_t i0 = static_cast<int64_t>(std::floor(pos));
        const double t = pos - i0, a = m.cubic_a;
        auto near = [a](double d) { return ((a + 2) * d - (a + 3)) * d * d + 1; };  // |d| <= 1
        auto far = [a](double d) {
          return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
        };  // 1 < |d| < 2
        const double w[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
        double sum = 0;
        for (int k = 0; k < 4; ++k) {
          const int64_t i = i0 - 1 + k;
          if (m.exclude_outside && (i < 0 || i >= in)) continue;
          taps.push_back(std::clamp<int64_t>(i, 0, in - 1));
          weights.push_back(w[k]);
          sum += w[k];
        }
        if (m.exclude_outside) {
          for (double& v : weights) v /= sum;
        }
      }
      if (outside) taps.clear(), weights.clear();
    }
    const float* src = cur.data<float>();
    if (m.mode == "nearest" && !crop && inner == 1) {  // the last axis, nearest: a gather
      std::vector<int64_t> pick(static_cast<size_t>(out_len));
      for (int64_t o = 0; o < out_len; ++o) pick[o] = tap_lists[o][0];
      for (int64_t b = 0; b < outer; ++b) {
        float* dst = next.data<float>() + b * out_len;
        const float* in_block = src + b * in;
        for (int64_t o = 0; o < out_len; ++o) dst[o] = in_block[pick[o]];
      }
      cur = std::move(next);
      continue;
    }
    for (int64_t b = 0; b < outer; ++b) {
      float* dst = next.data<float>() + b * out_len * inner;
      const float* in_block = src + b * in * inner;
      for (int64_t o = 0; o < out_len; ++o, dst += inner) {
        const auto& taps = tap_lists[o];
        const auto& weights = weight_lists[o];
        if (taps.empty()) {
          std::fill(dst, dst + inner, m.extrapolation);
        } else if (taps.size() == 1) {  // nearest: a copy
          std::copy(in_block + taps[0] * inner, in_block + (taps[0] + 1) * inner, dst);
        } else {
          for (int64_t i = 0; i < inner; ++i) {
            double acc = 0;
            for (size_t k = 0; k < taps.size(); ++k)
              acc += weights[k] * in_block[taps[k] * inner + i];
            dst[i] = static_cast<float>(acc);
          }
        }
      }
    }
    cur = std::move(next);
  }
  return cur;
}

void resize(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<float> scales;
  std::vector<int64_t> sizes;
  const int scales_input = c.opset >= 11 ? 2 : 1;
  if (c.opset >= 11 && c.has_input(3) && c.input(3).size() > 0) {
    sizes = c.input(3).to_int64();
  } else if (c.has_input(scales_input) && c.input(scales_input).size() > 0) {
    for (int64_t i = 0; i < c.input(scales_input).size(); ++i) {
      scales.push_back(static_cast<float>(c.input(scales_input).element_as_double(i)));
    }
  } else {
    c.fail("neither scales nor sizes given");
  }
  if (c.attr_int("antialias", 0) != 0) c.fail("antialias is not supported");
  if (c.has_attr("axes")) c.fail("the axes attribute is not supported");
  if (c.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch")
    c.fail("keep_aspect_ratio_policy is not supported");
  ResizeMode m;
  m.mode = c.attr_string("mode", "nearest");
  m.coord =
      c.attr_string("coordinate_transformation_mode", c.opset >= 11 ? "half_pixel" : "asymmetric");
  m.nearest = c.attr_string("nearest_mode", "round_prefer_floor");
  m.cubic_a = c.attr_float("cubic_coeff_a", -0.75f);
  m.exclude_outside = c.attr_int("exclude_outside", 0) != 0;
  m.extrapolation = c.attr_float("extrapolation_value", 0.0f);
  if (m.coord == "tf_crop_and_resize") {
    if (!c.has_input(1) || c.input(1).size() != 2 * x.rank())
      c.fail("tf_crop_and_resize needs roi of 2 x rank values");
    for (int64_t i = 0; i < c.input(1).size(); ++i)
      m.roi.push_back(c.input(1).element_as_double(i));
  }
  c.output(0) = resize_axes(c, x, scales, sizes, m);
}

// Upsample (opset 7-9): Resize with asymmetric coordinates, nearest taking the floor.
void upsample(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<float> scales;
  if (c.opset >= 9) {
    for (int64_t i = 0; i < c.input(1).size(); ++i)
      scales.push_back(static_cast<float>(c.input(1).element_as_double(i)));
  } else {
    for (const auto& a : c.node.attribute()) {
      if (a.name() == "scales") scales.assign(a.floats().begin(), a.floats().end());
    }
  }
  ResizeMode m;
  m.mode = c.attr_string("mode", "nearest");
  if (m.mode == "bilinear") m.mode = "linear";
  m.coord = "asymmetric";
  m.nearest = "floor";
  c.output(0) = resize_axes(c, x, scales, {}, m);
}

// GridSample (2-D): out[n, c, h, w] = X[n, c] sampled at grid[n, h, w] = (x, y) in [-1, 1]
// (corner pixels' centers with align_corners, their outer edges without), nearest (ties to
// even), bilinear or bicubic (Keys, a = -0.75); taps outside the image are 0 (zeros), the
// nearest edge pixel (border) or mirrored at the edges (reflection).
void grid_sample(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& grid = c.input(1);
  require_float(c, x, "X");
  require_float(c, grid, "grid");
  if (x.rank() != 4 || grid.rank() != 4 || grid.shape()[3] != 2 ||
      grid.shape()[0] != x.shape()[0]) {
    c.fail("X must be [N, C, H, W] and grid [N, H_out, W_out, 2]");
  }
  // Opset 20 renamed the modes: linear, cubic.
  std::string mode = c.attr_string("mode", c.opset >= 20 ? "linear" : "bilinear");
  if (mode == "linear" || mode == "cubic") mode = "bi" + mode;
  const std::string padding = c.attr_string("padding_mode", "zeros");
  if (mode != "bilinear" && mode != "nearest" && mode != "bicubic")
    c.fail("mode '{}' is not supported", mode);
  if (padding != "zeros" && padding != "border" && padding != "reflection")
    c.fail("padding_mode '{}' is not supported", padding);
  const bool align = c.attr_int("align_corners", 0) != 0;
  const int64_t batch = x.shape()[0], channels = x.shape()[1], ih = x.shape()[2], iw = x.shape()[3];
  const int64_t oh = grid.shape()[1], ow = grid.shape()[2];
  Tensor out(TensorProto::FLOAT, {batch, channels, oh, ow});
  auto unnormalize = [&](double g, int64_t size) {
    return align ? (g + 1) / 2 * (size - 1) : ((g + 1) * size - 1) / 2;
  };
  // A coordinate mirrored into [lo, hi] (the image's extent for this align_corners).
  auto reflect = [](double v, double lo, double hi) {
    const double range = hi - lo;
    if (range <= 0) return lo;
    double d = v < lo ? lo - v : v > hi ? v - hi : 0;
    if (d == 0) return v;
    const double flips = std::floor(d / range);
    d -= flips * range;
    const bool even = static_cast<int64_t>(flips) % 2 == 0;
    return v < lo ? (even ? lo + d : hi - d) : (even ? hi - d : lo + d);
  };
  // The value of pixel (iy, ix) of a plane under the padding mode.
  auto pixel = [&](const float* plane, int64_t iy, int64_t ix) -> double {
    if (padding == "zeros")
      return iy < 0 || iy >= ih || ix < 0 || ix >= iw ? 0.0 : plane[iy * iw + ix];
    double y = static_cast<double>(iy), xx = static_cast<double>(ix);
    if (padding == "reflection") {
      y = align ? reflect(y, 0, ih - 1) : reflect(y, -0.5, ih - 0.5);
      xx = align ? reflect(xx, 0, iw - 1) : reflect(xx, -0.5, iw - 0.5);
    }
    const int64_t cy = std::clamp<int64_t>(static_cast<int64_t>(std::floor(y + 0.5)), 0, ih - 1);
    const int64_t cx = std::clamp<int64_t>(static_cast<int64_t>(std::floor(xx + 0.5)), 0, iw - 1);
    return plane[cy * iw + cx];
  };
  auto cubic = [](double t, double w[4]) {
    const double a = -0.75;
    auto near = [a](double d) { return ((a + 2) * d - (a + 3)) * d * d + 1; };
    auto far = [a](double d) { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a; };
    w[0] = far(t + 1), w[1] = near(t), w[2] = near(1 - t), w[3] = far(2 - t);
  };
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t h = 0; h < oh; ++h) {
      for (int64_t w = 0; w < ow; ++w) {
        const float* g = grid.data<float>() + ((n * oh + h) * ow + w) * 2;
        double px = unnormalize(g[0], iw), py = unnormalize(g[1], ih);
        if (mode != "bicubic") {  // coordinates themselves kept inside for border / reflection
          if (padding == "border") {
            px = std::clamp(px, 0.0, static_cast<double>(iw - 1)),
            py = std::clamp(py, 0.0, static_cast<double>(ih - 1));
          } else if (padding == "reflection") {
            px = align ? reflect(px, 0, iw - 1) : reflect(px, -0.5, iw - 0.5);
            py = align ? reflect(py, 0, ih - 1) : reflect(py, -0.5, ih - 0.5);
            px = std::clamp(px, 0.0, static_cast<double>(iw - 1)),
            py = std::clamp(py, 0.0, static_cast<double>(ih - 1));
          }
        }
        for (int64_t ch = 0; ch < channels; ++ch) {
          const float* plane = x.data<float>() + (n * channels + ch) * ih * iw;
          double v = 0;
          if (mode == "nearest") {
            v = pixel(plane, static_cast<int64_t>(std::nearbyint(py)),
                      static_cast<int64_t>(std::nearbyint(px)));
          } else if (mode == "bilinear") {
            const int64_t x0 = static_cast<int64_t>(std::floor(px)),
                          y0 = static_cast<int64_t>(std::floor(py));
            const double tx = px - x0, ty = py - y0;
            v = (1 - ty) * ((1 - tx) * pixel(plane, y0, x0) + tx * pixel(plane, y0, x0 + 1)) +
                ty * ((1 - tx) * pixel(plane, y0 + 1, x0) + tx * pixel(plane, y0 + 1, x0 + 1));
          } else {
            const int64_t x0 = static_cast<int64_t>(std::floor(px)),
                          y0 = static_cast<int64_t>(std::floor(py));
            double wx[4], wy[4];
            cubic(px - x0, wx), cubic(py - y0, wy);
            for (int i = 0; i < 4; ++i) {
              double row = 0;
              for (int j = 0; j < 4; ++j) row += wx[j] * pixel(plane, y0 - 1 + i, x0 - 1 + j);
              v += wy[i] * row;
            }
          }
          out.data<float>()[((n * channels + ch) * oh + h) * ow + w] = static_cast<float>(v);
        }
      }
    }
  }
  c.output(0) = std::move(out);
}

// RoiAlign: for each region (x1, y1, x2, y2) * spatial_scale of image batch_indices[r], an
// output_height x output_width grid of bins, each the average (or max) of sampling_ratio^2
// bilinear samples (adaptive: ceil(bin size) per axis when 0). half_pixel shifts the region by
// -0.5; output_half_pixel (the older behaviour) does not, and makes regions at least 1 x 1.
// Samples beyond a pixel outside the image count as 0, as in ONNX Runtime.
void roi_align(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& rois = c.input(1);
  require_float(c, x, "X");
  require_float(c, rois, "rois");
  const auto batch_index = c.input(2).to_int64();
  if (x.rank() != 4 || rois.rank() != 2 || rois.shape()[1] != 4 ||
      static_cast<int64_t>(batch_index.size()) != rois.shape()[0]) {
    c.fail("X must be [N, C, H, W], rois [R, 4] and batch_indices [R]");
  }
  const std::string mode = c.attr_string("mode", "avg");
  if (mode != "avg" && mode != "max") c.fail("mode '{}' is not supported", mode);
  const std::string coord = c.attr_string("coordinate_transformation_mode",
                                          c.opset >= 16 ? "half_pixel" : "output_half_pixel");
  if (coord != "half_pixel" && coord != "output_half_pixel")
    c.fail("coordinate_transformation_mode '{}' is not supported", coord);
  const bool half = coord == "half_pixel";
  const int64_t out_h = c.attr_int("output_height", 1), out_w = c.attr_int("output_width", 1);
  const int64_t ratio = c.attr_int("sampling_ratio", 0);
  const double scale = c.attr_float("spatial_scale", 1.0f);
  const int64_t channels = x.shape()[1], ih = x.shape()[2], iw = x.shape()[3],
                regions = rois.shape()[0];
  Tensor out(TensorProto::FLOAT, {regions, channels, out_h, out_w});
  for (int64_t r = 0; r < regions; ++r) {
    const float* box = rois.data<float>() + r * 4;
    const int64_t n = batch_index[r];
    if (n < 0 || n >= x.shape()[0]) c.fail("batch index {} is out of range", n);
    const double offset = half ? 0.5 : 0.0;
    const double x0 = box[0] * scale - offset, y0 = box[1] * scale - offset;
    double roi_w = box[2] * scale - offset - x0, roi_h = box[3] * scale - offset - y0;
    if (!half) roi_w = std::max(roi_w, 1.0), roi_h = std::max(roi_h, 1.0);
    const double bin_h = roi_h / out_h, bin_w = roi_w / out_w;
    const int64_t grid_h = ratio > 0 ? ratio : static_cast<int64_t>(std::ceil(roi_h / out_h));
    const int64_t grid_w = ratio > 0 ? ratio : static_cast<int64_t>(std::ceil(roi_w / out_w));
    const double count = static_cast<double>(std::max<int64_t>(grid_h * grid_w, 1));
    for (int64_t ch = 0; ch < channels; ++ch) {
      const float* plane = x.data<float>() + (n * channels + ch) * ih * iw;
      for (int64_t ph = 0; ph < out_h; ++ph) {
        for (int64_t pw = 0; pw < out_w; ++pw) {
          double acc = mode == "max" ? -std::numeric_limits<double>::infinity() : 0.0;
          bool any = false;
          for (int64_t gy = 0; gy < grid_h; ++gy) {
            for (int64_t gx = 0; gx < grid_w; ++gx) {
              double y = y0 + ph * bin_h + (gy + 0.5) * bin_h / grid_h;
              double xx = x0 + pw * bin_w + (gx + 0.5) * bin_w / grid_w;
              double terms[4] = {0, 0, 0, 0};
              if (!(y < -1.0 || y > ih || xx < -1.0 || xx > iw)) {
                y = std::max(y, 0.0), xx = std::max(xx, 0.0);
                int64_t ylo = static_cast<int64_t>(y), xlo = static_cast<int64_t>(xx), yhi, xhi;
                if (ylo >= ih - 1)
                  yhi = ylo = ih - 1, y = static_cast<double>(ylo);
                else
                  yhi = ylo + 1;
                if (xlo >= iw - 1)
                  xhi = xlo = iw - 1, xx = static_cast<double>(xlo);
                else
                  xhi = xlo + 1;
                const double ly = y - ylo, lx = xx - xlo, hy = 1 - ly, hx = 1 - lx;
                terms[0] = hy * hx * plane[ylo * iw + xlo],
                terms[1] = hy * lx * plane[ylo * iw + xhi];
                terms[2] = ly * hx * plane[yhi * iw + xlo],
                terms[3] = ly * lx * plane[yhi * iw + xhi];
              }
              if (mode == "avg") {
                acc += terms[0] + terms[1] + terms[2] + terms[3];
              } else {  // ONNX Runtime's max: of the weighted corner terms
                for (double t : terms) acc = any ? std::max(acc, t) : t, any = true;
              }
            }
          }
          out.data<float>()[((r * channels + ch) * out_h + ph) * out_w + pw] =
              static_cast<float>(mode == "avg" ? acc / count : acc);
        }
      }
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_resample(Registry& r) {
  r["RoiAlign"] = roi_align;
  r["GridSample"] = grid_sample;
  r["Resize"] = resize;
  r["Upsample"] = upsample;
}

}  // namespace quantize::exec
