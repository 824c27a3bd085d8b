// Control flow: If and Loop, their branches and bodies run as subgraphs that read the enclosing
// graph's values by name.
#include <cstring>

#include "ops.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

bool truth(const OpContext& c, const Tensor& t, const char* what) {
  if (t.size() != 1) c.fail("{} has {} elements, 1 expected", what, t.size());
  return t.element_as_double(0) != 0;
}

Tensor scalar_int64(int64_t v) {
  Tensor t(TensorProto::INT64, {});
  t.data<int64_t>()[0] = v;
  return t;
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
  if (carried < 0 || body->input_size() != carried + 2) c.fail("the body takes {} inputs for {} loop-carried values", body->input_size(), carried);
  const int scans = body->output_size() - 1 - carried;
  if (scans < 0 || c.output_count() > carried + scans) c.fail("the body's outputs do not match the node's");
  std::vector<Tensor> state;
  for (int i = 0; i < carried; ++i) state.push_back(c.input(2 + i));
  std::vector<std::vector<Tensor>> stacked(static_cast<size_t>(scans));
  for (int64_t i = 0; (!bounded || i < trips) && cond; ++i) {
    std::vector<Tensor> args{scalar_int64(i), scalar_bool(cond)};
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

}  // namespace

void register_control(Registry& r) {
  r["If"] = if_op;
  r["Loop"] = loop;
}

}  // namespace quantize::exec
