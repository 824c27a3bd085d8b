// RNN, GRU and LSTM (ONNX opset 7-22 semantics), float32, forward / reverse / bidirectional,
// layout 0 (sequence first) or 1 (batch first).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "executor/core/ops.h"
#include "model/tensor_data.h"
#include "support/threads.h"

// With the default activations (RNN: Tanh, Relu or Sigmoid; GRU and LSTM: Sigmoid, Tanh), with or
// without LSTM peepholes. Refused with the node's name: other activations, clip, input_forget,
// sequence_lens shorter than the input.
//   RNN: H' = f(XWi + HRi + Wbi + Rbi)
//   GRU (gates z, r, h):  z = s(XWz + HRz + b), r = s(XWr + HRr + b),
//     h~ = tanh(XWh + (r . H)Rh + b)  or, linear_before_reset, tanh(XWh + r . (HRh + Rbh) + Wbh)
//     H' = (1 - z) . h~ + z . H
//   LSTM (gates i, o, f, c): i = s(XWi + HRi + Pi.C + b), f = s(XWf + HRf + Pf.C + b),
//     c~ = tanh(XWc + HRc + b), C' = f.C + i.c~, o = s(XWo + HRo + Po.C' + b), H' = o.tanh(C')

namespace quantize::exec {
namespace {

using onnx::TensorProto;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

struct Rnn {
  int64_t seq, batch, input, hidden, dirs;
  bool reverse_only;
};

Rnn check(OpContext& c, int gates) {
  const Tensor& x = c.input(0);
  for (int i = 0; i < c.input_count(); ++i) {
    if (c.has_input(i) && i != 4 && c.input(i).dtype() != TensorProto::FLOAT) {
      c.fail("input {} is data type {}: only float32 is supported", i, c.input(i).dtype());
    }
  }
  if (c.has_attr("clip")) c.fail("clip is not supported");
  if (c.attr_int("input_forget", 0) != 0) c.fail("input_forget is not supported");
  if (c.has_attr("activations")) {
    for (const auto& attr : c.node.attribute()) {
      if (attr.name() != "activations") continue;
      for (int i = 0; i < attr.strings_size(); ++i) {
        const std::string& f = attr.strings(i);
        if (gates == 1) {
          if (f != "Tanh" && f != "Relu" && f != "Sigmoid")
            c.fail("activation {} is not supported", f);
          continue;
        }
        const bool first = gates == 3 ? i % 2 == 0 : i % 3 == 0;
        if (f != (first ? "Sigmoid" : "Tanh")) c.fail("activation {} is not supported", f);
      }
    }
  }
  if (x.rank() != 3 || c.input(1).rank() != 3 || c.input(2).rank() != 3) {
    c.fail("X, W and R must be 3-D");
  }
  Rnn r;
  r.seq = x.shape()[0];
  r.batch = x.shape()[1];
  r.input = x.shape()[2];
  r.hidden = c.attr_int("hidden_size", c.input(2).shape()[2]);
  const std::string direction = c.attr_string("direction", "forward");
  r.dirs = direction == "bidirectional" ? 2 : 1;
  r.reverse_only = direction == "reverse";
  // Every operand's shape as the op's definition fixes it: the loops below index by them.
  auto expect = [&](int i, const char* what, std::vector<int64_t> shape) {
    if (c.has_input(i) && c.input(i).shape() != shape) {
      c.fail("{} has shape [{}], expected [{}]", what, fmt::join(c.input(i).shape(), ", "),
             fmt::join(shape, ", "));
    }
  };
  if (r.hidden < 1) c.fail("hidden_size {} must be positive", r.hidden);
  const int64_t g = gates == 1 ? 1 : gates, h = r.hidden;
  expect(1, "W", {r.dirs, g * h, r.input});
  expect(2, "R", {r.dirs, g * h, h});
  expect(3, "B", {r.dirs, 2 * g * h});
  expect(4, "sequence_lens", {r.batch});
  expect(5, "initial_h", {r.dirs, r.batch, h});
  if (gates == 4) {
    expect(6, "initial_c", {r.dirs, r.batch, h});
    expect(7, "P", {r.dirs, 3 * h});
  }
  if (c.has_input(4)) {
    for (int64_t len : c.input(4).to_int64()) {
      if (len != r.seq) c.fail("sequence_lens shorter than the sequence are not supported");
    }
  }
  return r;
}

// A [rows, cols] weight transposed to [cols, rows], for project_t.
std::vector<float> transposed(const float* w, int64_t rows, int64_t cols) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t g = 0; g < rows; ++g) {
    for (int64_t k = 0; k < cols; ++k) t[k * rows + g] = w[g * cols + k];
  }
  return t;
}

// out[b][g] = sum_k in[b][k] * wt[k][g0 + g] for g < rows, wt a transposed weight with rows ld
// apart: k ascending for every g, as a dot product would, in vectorizable row updates. (Sums in
// that order keep the dynamic-INT8 GRU's requantized outputs where ONNX Runtime puts them; a
// BLAS's blocked order moved one across a rounding step.)
QUANTIZE_CLONES_NO_FMA
void project_t(const float* in, int64_t batch, int64_t cols, const float* wt, int64_t ld,
               int64_t rows, float* out) {
  for (int64_t b = 0; b < batch; ++b) {
    float* __restrict o = out + b * rows;
    std::fill(o, o + rows, 0.0f);
    for (int64_t k = 0; k < cols; ++k) {
      const float v = in[b * cols + k];
      const float* __restrict r = wt + k * ld;
      for (int64_t g = 0; g < rows; ++g) o[g] += v * r[g];
    }
  }
}

// Direction d's recurrence weights transposed and the input projections of all its steps
// (x[t][b] W^T, [seq * batch, gates * hidden]), for project_t.
struct Projections {
  std::vector<float> rt, xw_all;
};

Projections projections(const OpContext& c, const Rnn& r, int64_t gates, int64_t d) {
  const int64_t g = gates * r.hidden;
  Projections p;
  p.rt = transposed(c.input(2).data<float>() + d * g * r.hidden, g, r.hidden);
  p.xw_all.resize(static_cast<size_t>(r.seq * r.batch * g));
  project_t(c.input(0).data<float>(), r.seq * r.batch, r.input,
            transposed(c.input(1).data<float>() + d * g * r.input, g, r.input).data(), g, g,
            p.xw_all.data());
  return p;
}

// Direction d's initial hidden (input 5) or cell (input 6) state, zeros when absent.
void initial_state(const OpContext& c, int input, int64_t d, std::vector<float>& v) {
  if (c.has_input(input)) {
    const float* src = c.input(input).data<float>() + d * static_cast<int64_t>(v.size());
    std::copy(src, src + v.size(), v.begin());
  } else {
    std::fill(v.begin(), v.end(), 0.0f);
  }
}

void gru(OpContext& c) {
  const Rnn r = check(c, 3);
  const int64_t h = r.hidden;
  const bool before_reset = c.attr_int("linear_before_reset", 0) != 0;
  Tensor y(TensorProto::FLOAT, {r.seq, r.dirs, r.batch, h});
  Tensor y_h(TensorProto::FLOAT, {r.dirs, r.batch, h});
  parallel_for(
      static_cast<size_t>(r.dirs), 1, [&](size_t d0, size_t d1) {  // directions side by side
        std::vector<float> xw(r.batch * 3 * h), hr(r.batch * 3 * h), state(r.batch * h),
            gated(r.batch * h);
        for (int64_t d = static_cast<int64_t>(d0); d < static_cast<int64_t>(d1); ++d) {
          const auto [rt, xw_all] = projections(c, r, 3, d);
          const float* bias = c.has_input(3) ? c.input(3).data<float>() + d * 6 * h : nullptr;
          initial_state(c, 5, d, state);
          const bool reverse = d == 1 || r.reverse_only;
          for (int64_t step = 0; step < r.seq; ++step) {
            const int64_t t = reverse ? r.seq - 1 - step : step;
            std::copy(xw_all.begin() + t * r.batch * 3 * h,
                      xw_all.begin() + (t + 1) * r.batch * 3 * h, xw.begin());
            project_t(state.data(), r.batch, h, rt.data(), 3 * h, 3 * h,
                      hr.data());  // z and r parts used below
            for (int64_t b = 0; b < r.batch; ++b) {
              for (int64_t j = 0; j < h; ++j) {
                auto wb = [&](int g) { return bias ? bias[g * h + j] : 0.0f; };
                auto rb = [&](int g) { return bias ? bias[3 * h + g * h + j] : 0.0f; };
                const int64_t i = b * 3 * h;
                const float z = sigmoid(xw[i + j] + hr[i + j] + wb(0) + rb(0));
                const float rr = sigmoid(xw[i + h + j] + hr[i + h + j] + wb(1) + rb(1));
                gated[b * h + j] = rr;  // kept for the candidate below
                xw[i + j] = z;
              }
            }
            // Candidate: needs r . H (default) projected through Rh, or r . (H Rh + Rbh).
            std::vector<float> cand(r.batch * h);
            if (before_reset) {
              for (int64_t b = 0; b < r.batch; ++b) {
                for (int64_t j = 0; j < h; ++j) {
                  const float rbh = bias ? bias[3 * h + 2 * h + j] : 0.0f;
                  cand[b * h + j] = gated[b * h + j] * (hr[b * 3 * h + 2 * h + j] + rbh);
                }
              }
            } else {
              std::vector<float> rh(r.batch * h);
              for (int64_t k = 0; k < r.batch * h; ++k) rh[k] = gated[k] * state[k];
              project_t(rh.data(), r.batch, h, rt.data() + 2 * h, 3 * h, h, cand.data());
              if (bias) {
                for (int64_t b = 0; b < r.batch; ++b) {
                  for (int64_t j = 0; j < h; ++j) cand[b * h + j] += bias[3 * h + 2 * h + j];
                }
              }
            }
            for (int64_t b = 0; b < r.batch; ++b) {
              for (int64_t j = 0; j < h; ++j) {
                const float wbh = bias ? bias[2 * h + j] : 0.0f;
                const float hh = std::tanh(xw[b * 3 * h + 2 * h + j] + cand[b * h + j] + wbh);
                const float z = xw[b * 3 * h + j];
                state[b * h + j] = (1.0f - z) * hh + z * state[b * h + j];
              }
            }
            std::memcpy(y.data<float>() + ((t * r.dirs + d) * r.batch) * h, state.data(),
                        state.size() * 4);
          }
          std::memcpy(y_h.data<float>() + d * r.batch * h, state.data(), state.size() * 4);
        }
      });
  c.output(0) = std::move(y);
  if (c.output_count() > 1) c.output(1) = std::move(y_h);
}

void lstm(OpContext& c) {
  const Rnn r = check(c, 4);
  const int64_t h = r.hidden;
  Tensor y(TensorProto::FLOAT, {r.seq, r.dirs, r.batch, h});
  Tensor y_h(TensorProto::FLOAT, {r.dirs, r.batch, h}),
      y_c(TensorProto::FLOAT, {r.dirs, r.batch, h});
  parallel_for(
      static_cast<size_t>(r.dirs), 1, [&](size_t d0, size_t d1) {  // directions side by side
        std::vector<float> xw(r.batch * 4 * h), hr(r.batch * 4 * h), state(r.batch * h),
            cell(r.batch * h);
        for (int64_t d = static_cast<int64_t>(d0); d < static_cast<int64_t>(d1); ++d) {
          const auto [rt, xw_all] = projections(c, r, 4, d);
          const float* bias = c.has_input(3) ? c.input(3).data<float>() + d * 8 * h : nullptr;
          const float* peep = c.has_input(7) ? c.input(7).data<float>() + d * 3 * h : nullptr;
          initial_state(c, 5, d, state);
          initial_state(c, 6, d, cell);
          const bool reverse = d == 1 || r.reverse_only;
          for (int64_t step = 0; step < r.seq; ++step) {
            const int64_t t = reverse ? r.seq - 1 - step : step;
            std::copy(xw_all.begin() + t * r.batch * 4 * h,
                      xw_all.begin() + (t + 1) * r.batch * 4 * h, xw.begin());
            project_t(state.data(), r.batch, h, rt.data(), 4 * h, 4 * h, hr.data());
            for (int64_t b = 0; b < r.batch; ++b) {
              for (int64_t j = 0; j < h; ++j) {
                const int64_t base = b * 4 * h;
                auto pre = [&](int g) {
                  return xw[base + g * h + j] + hr[base + g * h + j] +
                         (bias ? bias[g * h + j] + bias[4 * h + g * h + j] : 0.0f);
                };
                float& cs = cell[b * h + j];
                const float i = sigmoid(pre(0) + (peep ? peep[j] * cs : 0.0f));
                const float f = sigmoid(pre(2) + (peep ? peep[2 * h + j] * cs : 0.0f));
                const float cc = std::tanh(pre(3));
                cs = f * cs + i * cc;
                const float o = sigmoid(pre(1) + (peep ? peep[h + j] * cs : 0.0f));
                state[b * h + j] = o * std::tanh(cs);
              }
            }
            std::memcpy(y.data<float>() + ((t * r.dirs + d) * r.batch) * h, state.data(),
                        state.size() * 4);
          }
          std::memcpy(y_h.data<float>() + d * r.batch * h, state.data(), state.size() * 4);
          std::memcpy(y_c.data<float>() + d * r.batch * h, cell.data(), cell.size() * 4);
        }
      });
  c.output(0) = std::move(y);
  if (c.output_count() > 1) c.output(1) = std::move(y_h);
  if (c.output_count() > 2) c.output(2) = std::move(y_c);
}

// The activation of RNN direction d: "Tanh" unless the activations attribute names another.
std::string rnn_activation(const OpContext& c, int64_t d) {
  for (const auto& attr : c.node.attribute()) {
    if (attr.name() == "activations" && attr.strings_size() > d)
      return attr.strings(static_cast<int>(d));
  }
  return "Tanh";
}

void rnn(OpContext& c) {
  const Rnn r = check(c, 1);
  const int64_t h = r.hidden;
  Tensor y(TensorProto::FLOAT, {r.seq, r.dirs, r.batch, h});
  Tensor y_h(TensorProto::FLOAT, {r.dirs, r.batch, h});
  parallel_for(
      static_cast<size_t>(r.dirs), 1, [&](size_t d0, size_t d1) {  // directions side by side
        std::vector<float> xw(r.batch * h), hr(r.batch * h), state(r.batch * h);
        for (int64_t d = static_cast<int64_t>(d0); d < static_cast<int64_t>(d1); ++d) {
          const auto [rt, xw_all] = projections(c, r, 1, d);
          const float* bias = c.has_input(3) ? c.input(3).data<float>() + d * 2 * h : nullptr;
          const std::string f = rnn_activation(c, d);
          initial_state(c, 5, d, state);
          const bool reverse = d == 1 || r.reverse_only;
          for (int64_t step = 0; step < r.seq; ++step) {
            const int64_t t = reverse ? r.seq - 1 - step : step;
            std::copy(xw_all.begin() + t * r.batch * h, xw_all.begin() + (t + 1) * r.batch * h,
                      xw.begin());
            project_t(state.data(), r.batch, h, rt.data(), h, h, hr.data());
            for (int64_t b = 0; b < r.batch; ++b) {
              for (int64_t j = 0; j < h; ++j) {
                const float v =
                    xw[b * h + j] + hr[b * h + j] + (bias ? bias[j] + bias[h + j] : 0.0f);
                state[b * h + j] = f == "Relu"      ? std::max(v, 0.0f)
                                   : f == "Sigmoid" ? sigmoid(v)
                                                    : std::tanh(v);
              }
            }
            std::memcpy(y.data<float>() + ((t * r.dirs + d) * r.batch) * h, state.data(),
                        state.size() * 4);
          }
          std::memcpy(y_h.data<float>() + d * r.batch * h, state.data(), state.size() * 4);
        }
      });
  c.output(0) = std::move(y);
  if (c.output_count() > 1) c.output(1) = std::move(y_h);
}

// t with its first two axes swapped, the rest moved along.
Tensor swap_leading(const Tensor& t, int64_t first = 0) {
  std::vector<int64_t> shape = t.shape();
  std::swap(shape[first], shape[first + 1]);
  Tensor out(t.dtype(), shape);
  int64_t outer = 1, inner = element_size(t.dtype());
  for (int64_t i = 0; i < first; ++i) outer *= shape[i];
  for (int64_t i = first + 2; i < t.rank(); ++i) inner *= shape[i];
  const int64_t a = t.shape()[first], b = t.shape()[first + 1];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < a; ++i) {
      for (int64_t j = 0; j < b; ++j) {
        std::memcpy(out.raw() + ((o * b + j) * a + i) * inner,
                    t.raw() + ((o * a + i) * b + j) * inner, inner);
      }
    }
  }
  return out;
}

// layout = 1 (X [batch, seq, input], states [batch, dirs, hidden], Y [batch, seq, dirs, hidden]):
// the sequence-first op on transposed inputs, its outputs transposed back.
template <void (*kOp)(OpContext&)>
void with_layout(OpContext& c) {
  if (c.attr_int("layout", 0) == 0) return kOp(c);
  std::vector<Tensor> moved;
  moved.reserve(c.input_count());
  std::vector<const Tensor*> in;
  for (int i = 0; i < c.input_count(); ++i) {
    const bool batch_first = i == 0 || i == 5 || i == 6;  // X, initial_h, initial_c
    if (c.has_input(i) && batch_first) {
      if (c.input(i).rank() != 3) c.fail("input {} must be 3-D", i);
      moved.push_back(swap_leading(c.input(i)));
      in.push_back(&moved.back());
    } else {
      in.push_back(c.has_input(i) ? &c.input(i) : nullptr);
    }
  }
  std::vector<Tensor> out(c.output_count());
  OpContext inner(c.model, c.node, c.opset, in, out);
  kOp(inner);
  for (int i = 0; i < c.output_count(); ++i) {
    if (out[i].rank() == 0) continue;
    // Y [seq, dirs, batch, h] -> [batch, seq, dirs, h]; Y_h, Y_c [dirs, batch, h] -> [batch, dirs,
    // h].
    c.output(i) = i == 0 ? swap_leading(swap_leading(out[i], 1)) : swap_leading(out[i]);
  }
}

}  // namespace

void register_rnn(Registry& r) {
  r["RNN"] = with_layout<rnn>;
  r["GRU"] = with_layout<gru>;
  r["LSTM"] = with_layout<lstm>;
}

}  // namespace quantize::exec
