// Control flow: If, Loop and Scan, their branches and bodies run as subgraphs that read the
// enclosing graph's values by name.
#include <cstring>

#include "executor/core/ops.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

bool truth(const OpContext& c, const Tensor& t, const char* what) {
  if (t.size() != 1) c.fail("{} has {} elements, 1 expected", what, t.size());
  return t.element_as_double(0) != 0;
}

Tensor scalar_bool(bool v) {
  Tensor t(TensorProto::BOOL, {});
  t.data<uint8_t>()[0] = v;
  return t;
}

// If: the outputs of then_branch or else_branch.
void if_op(OpContext& c) {
  const bool cond = truth(c, c.input(0), "cond");
  const onnx::GraphProto* branch = c.attr_graph(cond ? "then_branch" : "else_branch");
  if (!branch) c.fail("{} is missing", cond ? "then_branch" : "else_branch");
  auto outputs = c.run_subgraph(*branch, {});
  if (static_cast<int>(outputs.size()) != c.output_count()) {
    c.fail("the branch gives {} outputs for {}", outputs.size(), c.output_count());
  }
  for (int i = 0; i < c.output_count(); ++i) c.output(i) = std::move(outputs[i]);
}

// Loop: body(iteration, cond, carried...) -> (cond, carried..., scan...) while the iteration is
// below M (when given) and cond holds; outputs the final carried values, then each scan output's
// values of all iterations stacked on a new first axis.
void loop(OpContext& c) {
  const onnx::GraphProto* body = c.attr_graph("body");
  if (!body) c.fail("body is missing");
  const bool bounded = c.has_input(0);
  const int64_t trips = bounded ? c.input(0).to_int64().at(0) : 0;
  bool cond = c.has_input(1) ? truth(c, c.input(1), "cond") : true;
  const int carried = c.input_count() - 2;
  if (carried < 0 || body->input_size() != carried + 2)
    c.fail("the body takes {} inputs for {} loop-carried values", body->input_size(), carried);
  const int scans = body->output_size() - 1 - carried;
  if (scans < 0 || c.output_count() > carried + scans)
    c.fail("the body's outputs do not match the node's");
  std::vector<Tensor> state;
  for (int i = 0; i < carried; ++i) state.push_back(c.input(2 + i));
  std::vector<std::vector<Tensor>> stacked(static_cast<size_t>(scans));
  for (int64_t i = 0; (!bounded || i < trips) && cond; ++i) {
    std::vector<Tensor> args{int64_tensor({i}, {}), scalar_bool(cond)};
    args.insert(args.end(), state.begin(), state.end());
    auto out = c.run_subgraph(*body, args);
    cond = truth(c, out[0], "the body's cond output");
    for (int k = 0; k < carried; ++k) state[k] = std::move(out[1 + k]);
    for (int k = 0; k < scans; ++k) stacked[k].push_back(std::move(out[1 + carried + k]));
  }
  for (int k = 0; k < carried && k < c.output_count(); ++k) c.output(k) = std::move(state[k]);
  for (int k = 0; k < scans && carried + k < c.output_count(); ++k) {
    const auto& parts = stacked[k];
    if (parts.empty()) {  // no iteration ran: an empty stack of the declared type
      const auto& type = body->output(1 + carried + k).type().tensor_type();
      c.output(carried + k) = Tensor(type.elem_type() ? type.elem_type() : TensorProto::FLOAT, {0});
      continue;
    }
    std::vector<int64_t> shape{static_cast<int64_t>(parts.size())};
    shape.insert(shape.end(), parts[0].shape().begin(), parts[0].shape().end());
    Tensor out(parts[0].dtype(), shape);
    for (size_t p = 0; p < parts.size(); ++p) {
      if (parts[p].shape() != parts[0].shape() || parts[p].dtype() != parts[0].dtype()) {
        c.fail("scan output {} changes shape or type between iterations", k);
      }
      std::memcpy(out.raw() + p * parts[0].bytes(), parts[p].raw(), parts[0].bytes());
    }
    c.output(carried + k) = std::move(out);
  }
}

// Scan (opset 9+): body(states..., one slice of each scan input...) -> (states..., scan output
// slices...), once per position along each scan input's axis (from the end when its direction
// is 1); outputs the final states, then each scan output's slices stacked along its axis (in
// reverse when its direction is 1).
void scan(OpContext& c) {
  if (c.opset < 9) c.fail("Scan before opset 9 (batch axis, sequence_lens) is not supported");
  const onnx::GraphProto* body = c.attr_graph("body");
  if (!body) c.fail("body is missing");
  const int64_t m = c.attr_int("num_scan_inputs", 0), n = c.input_count() - m;
  if (m < 1 || n < 0) c.fail("num_scan_inputs {} for {} inputs", m, c.input_count());
  auto ints = [&](const char* name, int64_t count) {
    std::vector<int64_t> v = c.attr_ints(name);
    if (v.empty()) v.assign(static_cast<size_t>(count), 0);
    if (static_cast<int64_t>(v.size()) != count)
      c.fail("{} has {} values for {}", name, v.size(), count);
    return v;
  };
  const int64_t k_outputs = c.output_count() - n;
  auto in_axes = ints("scan_input_axes", m), in_dirs = ints("scan_input_directions", m);
  auto out_axes = ints("scan_output_axes", k_outputs),
       out_dirs = ints("scan_output_directions", k_outputs);
  int64_t length = -1;
  for (int64_t j = 0; j < m; ++j) {
    const Tensor& x = c.input(static_cast<int>(n + j));
    in_axes[j] = normalize_axis(c, in_axes[j], x.rank());
    if (length >= 0 && x.shape()[in_axes[j]] != length) c.fail("scan inputs differ in length");
    length = x.shape()[in_axes[j]];
  }
  // Slice i of x along axis, that axis removed.
  auto slice = [](const Tensor& x, int64_t axis, int64_t i) {
    std::vector<int64_t> shape = x.shape();
    const int64_t len = shape[axis];
    shape.erase(shape.begin() + axis);
    Tensor out(x.dtype(), shape);
    int64_t outer = 1, inner = static_cast<int64_t>(element_size(x.dtype()));
    for (int64_t d = 0; d < axis; ++d) outer *= x.shape()[d];
    for (int64_t d = axis + 1; d < x.rank(); ++d) inner *= x.shape()[d];
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(out.raw() + o * inner, x.raw() + (o * len + i) * inner, inner);
    return out;
  };
  std::vector<Tensor> states;
  for (int64_t i = 0; i < n; ++i) states.push_back(c.input(static_cast<int>(i)));
  std::vector<std::vector<Tensor>> parts(static_cast<size_t>(std::max<int64_t>(k_outputs, 0)));
  for (int64_t t = 0; t < length; ++t) {
    std::vector<Tensor> args = states;
    for (int64_t j = 0; j < m; ++j) {
      args.push_back(
          slice(c.input(static_cast<int>(n + j)), in_axes[j], in_dirs[j] ? length - 1 - t : t));
    }
    auto out = c.run_subgraph(*body, args);
    if (static_cast<int64_t>(out.size()) != n + k_outputs)
      c.fail("the body gives {} outputs for {}", out.size(), n + k_outputs);
    for (int64_t i = 0; i < n; ++i) states[i] = std::move(out[i]);
    for (int64_t k = 0; k < k_outputs; ++k) parts[k].push_back(std::move(out[n + k]));
  }
  for (int64_t i = 0; i < n; ++i) c.output(static_cast<int>(i)) = std::move(states[i]);
  for (int64_t k = 0; k < k_outputs; ++k) {
    if (parts[k].empty()) c.fail("Scan over a length of 0 is not supported");
    const Tensor& first = parts[k][0];
    const int64_t axis = normalize_axis(c, out_axes[k], first.rank() + 1);
    std::vector<int64_t> shape = first.shape();
    shape.insert(shape.begin() + axis, length);
    Tensor out(first.dtype(), shape);
    int64_t outer = 1, inner = static_cast<int64_t>(element_size(first.dtype()));
    for (int64_t d = 0; d < axis; ++d) outer *= shape[d];
    for (int64_t d = axis + 1; d < static_cast<int64_t>(shape.size()); ++d) inner *= shape[d];
    for (int64_t t = 0; t < length; ++t) {
      const Tensor& part = parts[k][out_dirs[k] ? length - 1 - t : t];
      if (part.shape() != first.shape())
        c.fail("scan output {} changes shape between iterations", k);
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out.raw() + (o * length + t) * inner, part.raw() + o * inner, inner);
    }
    c.output(static_cast<int>(n + k)) = std::move(out);
  }
}

}  // namespace

void register_control(Registry& r) {
  r["Scan"] = scan;
  r["If"] = if_op;
  r["Loop"] = loop;
}

}  // namespace quantize::exec
