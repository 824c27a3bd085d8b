// Load-time validation (see validate.h).
#include "model/validate.h"

#include <fmt/format.h>

#include <deque>
#include <limits>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "model/tensor_data.h"
#include "quantize/error.h"

namespace quantize {
namespace {

constexpr uint64_t kMaxBytes = uint64_t{1} << 62;

std::string type_name(int data_type) {
  if (data_type == kInt4) return "INT4";
  if (data_type == kUInt4) return "UINT4";
  return onnx::TensorProto::DataType_IsValid(data_type)
             ? onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(data_type))
             : "?";
}

// How many values the typed field of `data_type` holds (ONNX's storage rules), or -1 when no
// typed field carries that type.
int64_t typed_values(const onnx::TensorProto& t) {
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::COMPLEX64:
      return t.float_data_size();
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT16:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT16:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL:
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16:
      return t.int32_data_size();
    case onnx::TensorProto::INT64:
      return t.int64_data_size();
    case onnx::TensorProto::UINT32:
    case onnx::TensorProto::UINT64:
      return t.uint64_data_size();
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::COMPLEX128:
      return t.double_data_size();
    case onnx::TensorProto::STRING:
      return t.string_data_size();
    default:
      return -1;
  }
}

class Validator {
 public:
  explicit Validator(const Model& model) : model_(model) {}

  void run() {
    const auto& proto = model_.proto;
    check_depth(proto.graph());
    for (const auto& f : proto.functions()) {
      for (const auto& node : f.node()) {
        check_node(node, fmt::format(" in local function '{}'", f.name()));
      }
    }
    check_functions();
    check_graphs();
  }

 private:
  [[noreturn]] void refuse(const std::string& what) const {
    fail(ExitCode::kInput, "{}: {}", model_.source, what);
  }

  // Bodies nest at most kMaxGraphDepth deep (checked first, without recursion: the other checks
  // and ONNX's own code recurse into bodies).
  void check_depth(const onnx::GraphProto& main) const {
    std::vector<std::pair<const onnx::GraphProto*, int>> stack = {{&main, 0}};
    while (!stack.empty()) {
      auto [g, depth] = stack.back();
      stack.pop_back();
      if (depth > kMaxGraphDepth) {
        refuse(fmt::format("subgraphs nest more than {} deep", kMaxGraphDepth));
      }
      for (const auto& node : g->node()) {
        for (const auto& a : node.attribute()) {
          if (a.has_g()) stack.push_back({&a.g(), depth + 1});
          for (const auto& body : a.graphs()) stack.push_back({&body, depth + 1});
        }
      }
    }
  }

  void check_tensor(const onnx::TensorProto& t, const std::string& where) const {
    const std::string name = fmt::format("{} '{}'", where, t.name());
    const int type = t.data_type();
    if (type == onnx::TensorProto::UNDEFINED ||
        (!onnx::TensorProto::DataType_IsValid(type) && !is_4bit(type))) {
      refuse(fmt::format("{} has data type {}, not an ONNX tensor type", name, type));
    }
    uint64_t count = 1;
    for (int64_t d : t.dims()) {
      if (d < 0) refuse(fmt::format("{} has a negative dimension ({})", name, d));
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count) || count > kMaxBytes) {
        refuse(fmt::format("{} claims more than 2^62 elements", name));
      }
    }
    const uint64_t size = is_4bit(type) ? 1 : element_size(type);  // (4-bit: an upper bound)
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, size, &bytes) || bytes > kMaxBytes) {
      refuse(fmt::format("{} claims more than 2^62 bytes", name));
    }
    bytes = tensor_bytes(type, count);
    const std::string shape = fmt::format("[{}] {}", fmt::join(t.dims(), ", "), type_name(type));
    if (has_payload(t)) {
      const uint64_t have = tensor_payload(model_, t)->size();
      if (size == 0 || have != bytes) {
        refuse(
            fmt::format("{} holds {} data bytes, its shape {} needs {}", name, have, shape, bytes));
      }
    } else if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      refuse(fmt::format("{}: external data in a model that cannot have it", name));
    } else if (t.has_raw_data()) {
      if (size == 0 || t.raw_data().size() != bytes) {
        refuse(fmt::format("{} holds {} raw bytes, its shape {} needs {}", name,
                           t.raw_data().size(), shape, bytes));
      }
    } else {
      const int64_t values = typed_values(t);
      const uint64_t want =
          type == onnx::TensorProto::COMPLEX64 || type == onnx::TensorProto::COMPLEX128 ? 2 * count
                                                                                        : count;
      if (values < 0 || static_cast<uint64_t>(values) != want) {
        refuse(fmt::format("{} holds {} values, its shape {} needs {}", name,
                           std::max<int64_t>(values, 0), shape, want));
      }
    }
  }

  void check_node(const onnx::NodeProto& node, const std::string& where) const {
    const std::string label = fmt::format("node '{}' ({}){}", node.name(), node.op_type(), where);
    for (const auto& a : node.attribute()) {
      const int kind = a.type();
      if (a.ref_attr_name().empty() && (kind == onnx::AttributeProto::UNDEFINED ||
                                        !onnx::AttributeProto::AttributeType_IsValid(kind))) {
        refuse(fmt::format("{}: attribute '{}' has kind {}, not an ONNX attribute kind", label,
                           a.name(), kind));
      }
      if (a.has_t())
        check_tensor(a.t(), fmt::format("tensor of {} attribute '{}'", label, a.name()));
      for (const auto& t : a.tensors()) {
        check_tensor(t, fmt::format("tensor of {} attribute '{}'", label, a.name()));
      }
      // ONNX's shape inference divides by these.
      if (a.name() == "strides" || a.name() == "dilations" || a.name() == "kernel_shape") {
        for (int64_t v : a.ints()) {
          if (v < 1) refuse(fmt::format("{}: {} {} must be positive", label, a.name(), v));
        }
      }
      if (a.name() == "group" && a.has_i() && a.i() < 1 &&
          node.op_type().find("Conv") != std::string::npos) {
        refuse(fmt::format("{}: group {} must be positive", label, a.i()));
      }
    }
  }

  // Local functions: no call cycle (ONNX's inliner would recurse forever).
  void check_functions() const {
    const auto& fs = model_.proto.functions();
    std::map<std::pair<std::string, std::string>, int> index;
    for (int i = 0; i < fs.size(); ++i) index[{fs[i].domain(), fs[i].name()}] = i;
    std::vector<std::vector<int>> calls(fs.size());
    for (int i = 0; i < fs.size(); ++i) {
      for (const auto& node : fs[i].node()) {
        auto it = index.find({node.domain(), node.op_type()});
        if (it != index.end()) calls[i].push_back(it->second);
      }
    }
    std::vector<int> state(fs.size(), 0);  // 0 new, 1 on the path, 2 done
    for (int root = 0; root < fs.size(); ++root) {
      if (state[root]) continue;
      std::vector<std::pair<int, size_t>> stack = {{root, 0}};
      state[root] = 1;
      while (!stack.empty()) {
        auto& [f, next] = stack.back();
        if (next == calls[f].size()) {
          state[f] = 2;
          stack.pop_back();
          continue;
        }
        const int callee = calls[f][next++];
        if (state[callee] == 1) {
          refuse(fmt::format("local function '{}' calls itself (through '{}')", fs[callee].name(),
                             fs[f].name()));
        }
        if (state[callee] == 0) {
          state[callee] = 1;
          stack.push_back({callee, 0});
        }
      }
    }
  }

  struct Scope {
    std::unordered_set<std::string> names;
    const Scope* parent = nullptr;
    bool defines(const std::string& name) const {
      for (const Scope* s = this; s; s = s->parent) {
        if (s->names.count(name)) return true;
      }
      return false;
    }
  };

  // Every graph, main first, each with the names its enclosing graphs define.
  void check_graphs() const {
    std::deque<Scope> scopes;  // stable addresses
    struct Item {
      const onnx::GraphProto* graph;
      const Scope* parent;
      std::string where;
    };
    std::vector<Item> stack = {{&model_.proto.graph(), nullptr, ""}};
    while (!stack.empty()) {
      Item item = std::move(stack.back());
      stack.pop_back();
      const onnx::GraphProto& g = *item.graph;
      Scope& scope = scopes.emplace_back();
      scope.parent = item.parent;
      for (const auto& v : g.input()) scope.names.insert(v.name());
      std::unordered_set<std::string> initializers;
      for (const auto& t : g.initializer()) {
        check_tensor(t, "initializer" + item.where);
        if (!initializers.insert(t.name()).second) {
          refuse(fmt::format("initializer '{}'{} is defined twice", t.name(), item.where));
        }
        scope.names.insert(t.name());
      }
      for (const auto& t : g.sparse_initializer()) scope.names.insert(t.values().name());
      std::unordered_map<std::string, int> producer;
      for (int i = 0; i < g.node_size(); ++i) {
        for (const auto& o : g.node(i).output()) {
          if (o.empty()) continue;
          if (scope.names.count(o) && !producer.count(o)) {
            refuse(fmt::format("node '{}' ({}){} writes '{}', a graph input or initializer",
                               g.node(i).name(), g.node(i).op_type(), item.where, o));
          }
          if (auto [it, fresh] = producer.emplace(o, i); !fresh) {
            refuse(fmt::format("value '{}'{} is written by two nodes ('{}' and '{}')", o,
                               item.where, g.node(it->second).name(), g.node(i).name()));
          }
          scope.names.insert(o);
        }
      }
      for (const auto& node : g.node()) {
        check_node(node, item.where);
        for (const auto& in : node.input()) {
          if (!in.empty() && !scope.defines(in)) {
            refuse(fmt::format("node '{}' ({}){} reads '{}', which nothing defines", node.name(),
                               node.op_type(), item.where, in));
          }
        }
        for (const auto& a : node.attribute()) {
          const std::string where = fmt::format(" in the '{}' body of node '{}' ({}){}", a.name(),
                                                node.name(), node.op_type(), item.where);
          if (a.has_g()) stack.push_back({&a.g(), &scope, where});
          for (const auto& body : a.graphs()) stack.push_back({&body, &scope, where});
        }
      }
      for (const auto& o : g.output()) {
        if (!scope.defines(o.name())) {
          refuse(fmt::format("graph output '{}'{} is never defined", o.name(), item.where));
        }
      }
      check_acyclic(g, producer, item.where);
    }
  }

  // Kahn's algorithm over the node inputs (a body's reads of this graph's values count too).
  void check_acyclic(const onnx::GraphProto& g,
                     const std::unordered_map<std::string, int>& producer,
                     const std::string& where) const {
    const int n = g.node_size();
    std::vector<std::vector<int>> users(n);
    std::vector<int> pending(n, 0);
    for (int i = 0; i < n; ++i) {
      std::unordered_set<int> deps;
      auto add = [&](const std::string& name) {
        auto it = producer.find(name);
        if (it != producer.end() && deps.insert(it->second).second) {
          users[it->second].push_back(i);
          ++pending[i];
        }
      };
      for (const auto& in : g.node(i).input()) add(in);
      read_in_bodies(g.node(i), add);
    }
    std::queue<int> ready;
    for (int i = 0; i < n; ++i) {
      if (pending[i] == 0) ready.push(i);
    }
    int sorted = 0;
    while (!ready.empty()) {
      const int i = ready.front();
      ready.pop();
      ++sorted;
      for (int u : users[i]) {
        if (--pending[u] == 0) ready.push(u);
      }
    }
    if (sorted != n) {
      for (int i = 0; i < n; ++i) {
        if (pending[i] > 0) {
          refuse(fmt::format("nodes form a cycle{} (through node '{}' ({}))", where,
                             g.node(i).name(), g.node(i).op_type()));
        }
      }
    }
  }

  // Calls add(name) for every name a node's bodies (at any depth) read: a superset of what they
  // read from outside, which is all the cycle check needs.
  template <typename Add>
  static void read_in_bodies(const onnx::NodeProto& node, const Add& add) {
    std::vector<const onnx::GraphProto*> stack;
    for (const auto& a : node.attribute()) {
      if (a.has_g()) stack.push_back(&a.g());
      for (const auto& body : a.graphs()) stack.push_back(&body);
    }
    while (!stack.empty()) {
      const onnx::GraphProto* g = stack.back();
      stack.pop_back();
      for (const auto& inner : g->node()) {
        for (const auto& in : inner.input()) add(in);
        for (const auto& a : inner.attribute()) {
          if (a.has_g()) stack.push_back(&a.g());
          for (const auto& body : a.graphs()) stack.push_back(&body);
        }
      }
      for (const auto& o : g->output()) add(o.name());
    }
  }

  const Model& model_;
};

}  // namespace

void validate_model(const Model& model) { Validator(model).run(); }

}  // namespace quantize
