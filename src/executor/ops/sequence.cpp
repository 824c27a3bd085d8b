// Sequences and optionals: SequenceConstruct, SequenceEmpty, SequenceAt, SequenceInsert,
// SequenceErase, SequenceLength, ConcatFromSequence, SplitToSequence, SequenceMap, Optional,
// OptionalHasElement, OptionalGetElement.
#include <cstring>

#include "executor/core/ops.h"
#include "model/tensor_data.h"

// A sequence or optional is a Tensor of dtype Tensor::kSequence / kOptional holding its elements;
// only these ops, Identity, If and Loop take them (the executor refuses them elsewhere by name).

namespace quantize::exec {
namespace {

using onnx::TensorProto;

const Tensor& sequence_input(const OpContext& c, int i) {
  const Tensor& s = c.input(i);
  if (s.dtype() != Tensor::kSequence) c.fail("input {} is not a sequence", i);
  return s;
}

// A position in a sequence of `length` items (negative counts from the end); `end` allows length.
int64_t position(const OpContext& c, int input, int64_t length, int64_t fallback, bool end) {
  int64_t p = c.has_input(input) ? c.input(input).to_int64().at(0) : fallback;
  if (p < 0) p += length;
  if (p < 0 || p > length || (p == length && !end))
    c.fail("position {} is outside a sequence of {}", p, length);
  return p;
}

void sequence_construct(OpContext& c) {
  std::vector<Tensor> items;
  for (int i = 0; i < c.input_count(); ++i) {
    if (i > 0 && c.input(i).dtype() != c.input(0).dtype()) c.fail("the tensors differ in type");
    items.push_back(c.input(i));
  }
  c.output(0) = Tensor::container(Tensor::kSequence, std::move(items));
}

void sequence_empty(OpContext& c) {
  c.output(0) = Tensor::container(Tensor::kSequence, {},
                                  static_cast<int>(c.attr_int("dtype", TensorProto::FLOAT)));
}

void sequence_at(OpContext& c) {
  const Tensor& s = sequence_input(c, 0);
  c.output(0) = s.items()[position(c, 1, s.size(), 0, false)];
}

void sequence_insert(OpContext& c) {
  const Tensor& s = sequence_input(c, 0);
  std::vector<Tensor> items = s.items();
  if (s.elem_type() != 0 && c.input(1).dtype() != s.elem_type())
    c.fail("the tensor is not of the sequence's type");
  items.insert(items.begin() + position(c, 2, s.size(), s.size(), true), c.input(1));
  c.output(0) = Tensor::container(Tensor::kSequence, std::move(items), s.elem_type());
}

void sequence_erase(OpContext& c) {
  const Tensor& s = sequence_input(c, 0);
  std::vector<Tensor> items = s.items();
  if (items.empty()) c.fail("the sequence is empty");
  items.erase(items.begin() + position(c, 1, s.size(), s.size() - 1, false));
  c.output(0) = Tensor::container(Tensor::kSequence, std::move(items), s.elem_type());
}

void sequence_length(OpContext& c) {
  c.output(0) = int64_tensor({sequence_input(c, 0).size()}, {});
}

// ConcatFromSequence: the tensors joined along `axis`, or stacked on a new axis there (new_axis).
void concat_from_sequence(OpContext& c) {
  const Tensor& s = sequence_input(c, 0);
  if (s.items().empty()) c.fail("the sequence is empty");
  const bool stack = c.attr_int("new_axis", 0) != 0;
  const Tensor& first = s.items()[0];
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), first.rank() + (stack ? 1 : 0));
  std::vector<int64_t> shape = first.shape();
  if (stack)
    shape.insert(shape.begin() + axis, 0);
  else
    shape[axis] = 0;  // summed below
  int64_t outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
  std::vector<int64_t> chunk;  // bytes of each item per outer index
  for (const Tensor& t : s.items()) {
    if (t.dtype() != first.dtype() || t.rank() != first.rank())
      c.fail("the tensors differ in type or rank");
    for (int64_t i = 0; i < t.rank(); ++i) {
      if ((stack || i != axis) && t.shape()[i] != first.shape()[i]) {
        c.fail("the tensors' shapes do not concatenate");
      }
    }
    shape[axis] += stack ? 1 : t.shape()[axis];
    chunk.push_back(static_cast<int64_t>(t.bytes()) / std::max<int64_t>(outer, 1));
  }
  Tensor out(first.dtype(), shape);
  uint8_t* dst = out.raw();
  for (int64_t o = 0; o < outer; ++o) {
    for (size_t k = 0; k < s.items().size(); ++k) {
      std::memcpy(dst, s.items()[k].raw() + o * chunk[k], chunk[k]);
      dst += chunk[k];
    }
  }
  c.output(0) = std::move(out);
}

// SplitToSequence: pieces along `axis`: of the sizes `split` lists, of `split` each (the last
// shorter), or of 1 each without it (that axis dropped unless keepdims).
void split_to_sequence(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  const int64_t dim = x.shape()[axis];
  std::vector<int64_t> sizes;
  bool drop = false;
  if (!c.has_input(1)) {
    sizes.assign(static_cast<size_t>(dim), 1);
    drop = c.attr_int("keepdims", 1) == 0;
  } else if (c.input(1).rank() == 0) {
    const int64_t each = c.input(1).to_int64()[0];
    if (each < 1) c.fail("split {} is not positive", each);
    for (int64_t at = 0; at < dim; at += each) sizes.push_back(std::min(each, dim - at));
  } else {
    sizes = c.input(1).to_int64();
    int64_t total = 0;
    for (int64_t v : sizes) total += v;
    if (total != dim) c.fail("split sizes add up to {}, the axis has {}", total, dim);
  }
  int64_t outer = 1, inner = static_cast<int64_t>(element_size(x.dtype()));
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  std::vector<Tensor> items;
  int64_t start = 0;
  for (int64_t n : sizes) {
    std::vector<int64_t> shape = x.shape();
    shape[axis] = n;
    if (drop) shape.erase(shape.begin() + axis);
    Tensor piece(x.dtype(), shape);
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(piece.raw() + o * n * inner, x.raw() + (o * dim + start) * inner, n * inner);
    }
    items.push_back(std::move(piece));
    start += n;
  }
  c.output(0) = Tensor::container(Tensor::kSequence, std::move(items), x.dtype());
}

// SequenceMap: the body once per position of the input sequence, taking the items at that
// position of every sequence input and the other inputs whole; each output a sequence.
void sequence_map(OpContext& c) {
  const onnx::GraphProto* body = c.attr_graph("body");
  if (!body) c.fail("body is missing");
  const int64_t length = sequence_input(c, 0).size();
  std::vector<std::vector<Tensor>> outs(static_cast<size_t>(c.output_count()));
  for (int64_t i = 0; i < length; ++i) {
    std::vector<Tensor> args;
    for (int k = 0; k < c.input_count(); ++k) {
      const Tensor& in = c.input(k);
      if (in.dtype() == Tensor::kSequence) {
        if (in.size() != length) c.fail("input sequences differ in length");
        args.push_back(in.items()[i]);
      } else {
        args.push_back(in);
      }
    }
    auto result = c.run_subgraph(*body, args);
    if (static_cast<int>(result.size()) != c.output_count())
      c.fail("the body gives {} outputs", result.size());
    for (size_t k = 0; k < result.size(); ++k) outs[k].push_back(std::move(result[k]));
  }
  for (int k = 0; k < c.output_count(); ++k) {
    const auto& type = body->output(k).type().tensor_type();
    c.output(k) = Tensor::container(Tensor::kSequence, std::move(outs[k]), type.elem_type());
  }
}

void optional_op(OpContext& c) {
  std::vector<Tensor> item;
  if (c.has_input(0)) item.push_back(c.input(0));
  c.output(0) = Tensor::container(Tensor::kOptional, std::move(item));
}

void optional_has_element(OpContext& c) {
  Tensor out(TensorProto::BOOL, {});
  out.data<uint8_t>()[0] =
      c.has_input(0) && (c.input(0).dtype() != Tensor::kOptional || !c.input(0).items().empty());
  c.output(0) = std::move(out);
}

void optional_get_element(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.dtype() != Tensor::kOptional) {  // a tensor or sequence given as is
    c.output(0) = x;
    return;
  }
  if (x.items().empty()) c.fail("the optional is empty");
  c.output(0) = x.items()[0];
}

}  // namespace

void register_sequence(Registry& r) {
  r["SequenceConstruct"] = sequence_construct;
  r["SequenceEmpty"] = sequence_empty;
  r["SequenceAt"] = sequence_at;
  r["SequenceInsert"] = sequence_insert;
  r["SequenceErase"] = sequence_erase;
  r["SequenceLength"] = sequence_length;
  r["ConcatFromSequence"] = concat_from_sequence;
  r["SplitToSequence"] = split_to_sequence;
  r["SequenceMap"] = sequence_map;
  r["Optional"] = optional_op;
  r["OptionalHasElement"] = optional_has_element;
  r["OptionalGetElement"] = optional_get_element;
}

}  // namespace quantize::exec
