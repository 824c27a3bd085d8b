// ONNX Runtime's contrib ops of transformer exports (Transformers.js, onnxruntime-genai), float32:
// com.microsoft.GroupQueryAttention, com.microsoft.GatherBlockQuantized and
// SimplifiedLayerNormalization (which ONNX Runtime registers in the default domain).
#include <algorithm>
#include <cmath>
#include <limits>

#include "executor/core/ops.h"
#include "executor/ops/layer_norm.h"

// float16 models run them in float32 like every other op. Semantics from ONNX Runtime's
// contrib-op documentation, checked against ONNX Runtime 1.30 by the run_vs_ort tests.

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// Rotary embedding of one head vector x (length head) at position pos, over its first
// 2 * half values: halves (x[i], x[i + half]) or, interleaved, pairs (x[2i], x[2i + 1]) turn by
// the angle whose cos / sin the caches hold: (a, b) -> (a cos - b sin, b cos + a sin).
void rotate(float* x, int64_t half, const float* cos, const float* sin, bool interleaved) {
  for (int64_t i = 0; i < half; ++i) {
    float& a = interleaved ? x[2 * i] : x[i];
    float& b = interleaved ? x[2 * i + 1] : x[i + half];
    const float ra = a * cos[i] - b * sin[i], rb = b * cos[i] + a * sin[i];
    a = ra, b = rb;
  }
}

// GroupQueryAttention: query [B, S, N*H] (or packed Q, K, V when key is absent), key and value
// [B, S, Nkv*H], past key / value [B, Nkv, P, H], seqlens_k [B] (total length - 1 per batch entry),
// total_sequence_length, optional rotary caches [max, rotary/2], position_ids, attention_bias.
// Per entry b: past = seqlens_k[b] + 1 - S (0 for a first prompt), query s sits at position
// past + s and attends to keys 0 .. past + s, the last local_window_size of them when a window
// is set (as ONNX Runtime counts it); scores scaled (default 1/sqrt(H)), soft-capped (softcap *
// tanh(x / softcap)), biased, softmaxed. Query head n reads key / value head n / (N / Nkv).
// Outputs: [B, S, N*H] and the present key / value [B, Nkv, T, H], T = max(total_sequence_length,
// P).
void group_query_attention(OpContext& c) {
  const Tensor& query = c.input(0);
  require_float(c, query, "query");
  const int64_t heads = c.attr_int("num_heads", 0), kv_heads = c.attr_int("kv_num_heads", 0);
  if (heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0)
    c.fail("num_heads {} and kv_num_heads {} do not group", heads, kv_heads);
  if (c.has_input(11)) c.fail("head_sink is not supported");
  if (c.output_count() > 3) c.fail("the output_qk output is not supported");
  if (query.rank() != 3) c.fail("query has rank {}, 3 expected", query.rank());
  const int64_t batch = query.shape()[0], seq = query.shape()[1];
  const bool packed = !c.has_input(1);
  const int64_t head =
      packed ? query.shape()[2] / (heads + 2 * kv_heads) : query.shape()[2] / heads;
  if (head <= 0 || (packed ? head * (heads + 2 * kv_heads) : head * heads) != query.shape()[2]) {
    c.fail("query width {} does not split into heads", query.shape()[2]);
  }
  const int64_t q_width = heads * head, kv_width = kv_heads * head;
  const int64_t row = packed ? q_width + 2 * kv_width : q_width;  // floats per query token
  auto q_at = [&](int64_t b, int64_t s) { return query.data<float>() + (b * seq + s) * row; };
  auto k_at = [&](int64_t b, int64_t s) {
    return packed ? q_at(b, s) + q_width : c.input(1).data<float>() + (b * seq + s) * kv_width;
  };
  auto v_at = [&](int64_t b, int64_t s) {
    return packed ? q_at(b, s) + q_width + kv_width
                  : c.input(2).data<float>() + (b * seq + s) * kv_width;
  };
  if (!packed) {
    require_float(c, c.input(1), "key");
    require_float(c, c.input(2), "value");
    if (c.input(1).shape() != std::vector<int64_t>{batch, seq, kv_width} ||
        c.input(2).shape() != c.input(1).shape()) {
      c.fail("key and value must be [{}, {}, {}]", batch, seq, kv_width);
    }
  }
  const bool has_past = c.has_input(3) && c.input(3).size() > 0;
  const int64_t past_len = has_past ? c.input(3).shape()[2] : 0;
  if (has_past) {
    require_float(c, c.input(3), "past_key");
    require_float(c, c.input(4), "past_value");
    if (c.input(3).shape() != std::vector<int64_t>{batch, kv_heads, past_len, head} ||
        c.input(4).shape() != c.input(3).shape()) {
      c.fail("past_key and past_value must be [{}, {}, P, {}]", batch, kv_heads, head);
    }
  }
  const auto seqlens = c.input(5).to_int64();
  const int64_t total = c.input(6).to_int64().at(0);
  if (static_cast<int64_t>(seqlens.size()) != batch)
    c.fail("seqlens_k has {} values for a batch of {}", seqlens.size(), batch);
  const bool first_prompt = !has_past || past_len == 0 ? seq == total : false;
  const int64_t present_len = std::max(total, past_len);

  const bool rotary = c.attr_int("do_rotary", 0) != 0;
  const bool interleaved = c.attr_int("rotary_interleaved", 0) != 0;
  int64_t half = 0, cache_rows = 0;
  if (rotary) {
    if (!c.has_input(7) || !c.has_input(8)) c.fail("do_rotary needs cos_cache and sin_cache");
    require_float(c, c.input(7), "cos_cache");
    require_float(c, c.input(8), "sin_cache");
    if (c.input(7).rank() != 2) c.fail("cos_cache must be [max_length, rotary_dim / 2]");
    cache_rows = c.input(7).shape()[0], half = c.input(7).shape()[1];
    if (2 * half > head || c.input(8).shape() != c.input(7).shape())
      c.fail("rotary caches do not fit the head size {}", head);
  }
  const std::vector<int64_t> positions =
      c.has_input(9) ? c.input(9).to_int64() : std::vector<int64_t>{};
  const float scale = c.attr_float("scale", 0.0f) != 0.0f
                          ? c.attr_float("scale", 0.0f)
                          : 1.0f / std::sqrt(static_cast<float>(head));
  const float softcap = c.attr_float("softcap", 0.0f);
  const int64_t window = c.attr_int("local_window_size", -1);
  const Tensor* bias = c.has_input(10) ? &c.input(10) : nullptr;
  if (bias) {
    require_float(c, *bias, "attention_bias");
    if (bias->rank() != 4 || bias->shape()[2] != seq || bias->shape()[3] < total ||
        (bias->shape()[0] != 1 && bias->shape()[0] != batch) ||
        (bias->shape()[1] != 1 && bias->shape()[1] != heads)) {
      c.fail("attention_bias must be [B or 1, N or 1, {}, >= {}]", seq, total);
    }
  }

  Tensor out(TensorProto::FLOAT, {batch, seq, q_width});
  Tensor present_k(TensorProto::FLOAT, {batch, kv_heads, present_len, head});
  Tensor present_v(TensorProto::FLOAT, {batch, kv_heads, present_len, head});
  std::vector<float> q(static_cast<size_t>(head)), scores;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t total_b = seqlens[b] + 1;
    const int64_t past_b = first_prompt ? 0 : total_b - seq;
    if (past_b < 0 || past_b > past_len || past_b + seq > present_len) {
      c.fail("seqlens_k[{}] = {} does not fit a past of {} and {} new tokens", b, seqlens[b],
             past_len, seq);
    }
    auto position = [&](int64_t s) {
      const int64_t p = positions.empty() ? past_b + s : positions[b * seq + s];
      if (rotary && (p < 0 || p >= cache_rows))
        c.fail("position {} is outside the rotary caches", p);
      return p;
    };
    // Present = the first past_b steps of the past, then the new keys (rotated) and values.
    for (int64_t n = 0; n < kv_heads; ++n) {
      float* pk = present_k.data<float>() + ((b * kv_heads + n) * present_len) * head;
      float* pv = present_v.data<float>() + ((b * kv_heads + n) * present_len) * head;
      if (has_past) {
        const float* src_k = c.input(3).data<float>() + ((b * kv_heads + n) * past_len) * head;
        const float* src_v = c.input(4).data<float>() + ((b * kv_heads + n) * past_len) * head;
        std::copy(src_k, src_k + past_b * head, pk);
        std::copy(src_v, src_v + past_b * head, pv);
      }
      for (int64_t s = 0; s < seq; ++s) {
        float* dk = pk + (past_b + s) * head;
        std::copy(k_at(b, s) + n * head, k_at(b, s) + (n + 1) * head, dk);
        std::copy(v_at(b, s) + n * head, v_at(b, s) + (n + 1) * head, pv + (past_b + s) * head);
        if (rotary) {
          const int64_t p = position(s);
          rotate(dk, half, c.input(7).data<float>() + p * half, c.input(8).data<float>() + p * half,
                 interleaved);
        }
      }
    }
    for (int64_t n = 0; n < heads; ++n) {
      const int64_t kv = n / (heads / kv_heads);
      const float* keys = present_k.data<float>() + ((b * kv_heads + kv) * present_len) * head;
      const float* values = present_v.data<float>() + ((b * kv_heads + kv) * present_len) * head;
      for (int64_t s = 0; s < seq; ++s) {
        std::copy(q_at(b, s) + n * head, q_at(b, s) + (n + 1) * head, q.begin());
        if (rotary) {
          const int64_t p = position(s);
          rotate(q.data(), half, c.input(7).data<float>() + p * half,
                 c.input(8).data<float>() + p * half, interleaved);
        }
        const int64_t end = past_b + s + 1;  // keys 0 .. past_b + s
        const int64_t begin = window >= 0 ? std::max<int64_t>(0, end - window) : 0;
        scores.assign(static_cast<size_t>(end - begin), 0.0f);
        float top = -std::numeric_limits<float>::infinity();
        for (int64_t j = begin; j < end; ++j) {
          float dot = 0.0f;
          for (int64_t i = 0; i < head; ++i) dot += q[i] * keys[j * head + i];
          float v = dot * scale;
          if (softcap > 0.0f) v = softcap * std::tanh(v / softcap);
          if (bias) {
            const int64_t bb = bias->shape()[0] == 1 ? 0 : b, bn = bias->shape()[1] == 1 ? 0 : n;
            v += bias->data<float>()[((bb * bias->shape()[1] + bn) * seq + s) * bias->shape()[3] +
                                     j];
          }
          scores[j - begin] = v;
          top = std::max(top, v);
        }
        double sum = 0;
        for (float& v : scores) sum += (v = std::exp(v - top));
        float* dst = out.data<float>() + (b * seq + s) * q_width + n * head;
        for (int64_t i = 0; i < head; ++i) {
          double acc = 0;
          for (int64_t j = begin; j < end; ++j) acc += scores[j - begin] * values[j * head + i];
          dst[i] = static_cast<float>(acc / sum);
        }
      }
    }
  }
  c.output(0) = std::move(out);
  if (c.output_count() > 1) c.output(1) = std::move(present_k);
  if (c.output_count() > 2) c.output(2) = std::move(present_v);
}

// GatherBlockQuantized: Gather along gather_axis of block-quantized data, dequantized:
// (q - zero_point) * scale, one scale and zero point per block_size values along
// quantize_axis. bits = 4: uint8 data holds two values per byte (low nibble first), zero points
// likewise (pairs along their last axis), 8 when absent; bits = 8: uint8 data with zero point 128
// when absent, int8 with 0.
void gather_block_quantized(OpContext& c) {
  const Tensor& data = c.input(0);
  const auto indices = c.input(1).to_int64();
  const Tensor& scales = c.input(2);
  require_float(c, scales, "scales");
  const int64_t bits = c.attr_int("bits", 4), block = c.attr_int("block_size", 128);
  if (bits != 4 && bits != 8) c.fail("bits = {} is not supported", bits);
  if (data.dtype() != TensorProto::UINT8 && !(bits == 8 && data.dtype() == TensorProto::INT8)) {
    c.fail("data of type {} with {} bits is not supported", data.dtype(), bits);
  }
  const bool nibbles = bits == 4;
  std::vector<int64_t> shape = data.shape();  // logical, unpacked
  if (shape.empty()) c.fail("data must have rank >= 1");
  if (nibbles) shape.back() *= 2;
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t gather_axis = normalize_axis(c, c.attr_int("gather_axis", 0), rank);
  const int64_t quantize_axis = normalize_axis(c, c.attr_int("quantize_axis", rank - 1), rank);
  if (block < 16 || (block & (block - 1)) != 0)
    c.fail("block_size {} is not a power of two >= 16", block);
  std::vector<int64_t> scale_shape = shape;
  scale_shape[quantize_axis] = (shape[quantize_axis] + block - 1) / block;
  if (scales.shape() != scale_shape) c.fail("scales must be [{}]", fmt::join(scale_shape, ", "));
  const Tensor* zp = c.has_input(3) ? &c.input(3) : nullptr;
  auto value = [&](int64_t flat) -> int {  // the quantized integer at logical flat index
    if (nibbles) {
      const uint8_t byte = data.data<uint8_t>()[flat / 2];
      return flat % 2 ? byte >> 4 : byte & 15;
    }
    return data.dtype() == TensorProto::INT8 ? data.data<int8_t>()[flat]
                                             : data.data<uint8_t>()[flat];
  };
  // 4-bit zero points pack pairs along the last axis of the scales' shape, each row padded to
  // whole bytes.
  const int64_t zp_row = (scale_shape.back() + 1) / 2;
  if (zp) {
    if (zp->dtype() != TensorProto::UINT8 && !(!nibbles && zp->dtype() == TensorProto::INT8)) {
      c.fail("zero_points of type {} are not supported", zp->dtype());
    }
    const int64_t want = nibbles ? scales.size() / scale_shape.back() * zp_row : scales.size();
    if (zp->size() != want) c.fail("zero_points hold {} values, {} expected", zp->size(), want);
  }
  auto zero_point = [&](int64_t flat) -> int {  // at the flat index of the scales
    if (!zp) return nibbles ? 8 : data.dtype() == TensorProto::UINT8 ? 128 : 0;
    if (nibbles) {
      const int64_t last = flat % scale_shape.back();
      const uint8_t byte = zp->data<uint8_t>()[flat / scale_shape.back() * zp_row + last / 2];
      return last % 2 ? byte >> 4 : byte & 15;
    }
    return zp->dtype() == TensorProto::INT8 ? zp->data<int8_t>()[flat] : zp->data<uint8_t>()[flat];
  };
  std::vector<int64_t> out_shape(shape.begin(), shape.begin() + gather_axis);
  out_shape.insert(out_shape.end(), c.input(1).shape().begin(), c.input(1).shape().end());
  out_shape.insert(out_shape.end(), shape.begin() + gather_axis + 1, shape.end());
  Tensor out(TensorProto::FLOAT, out_shape);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < gather_axis; ++i) outer *= shape[i];
  for (int64_t i = gather_axis + 1; i < rank; ++i) inner *= shape[i];
  const auto sst = strides_of(scale_shape);
  std::vector<int64_t> at;
  float* dst = out.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k : indices) {
      if (k < 0) k += shape[gather_axis];
      if (k < 0 || k >= shape[gather_axis]) c.fail("index {} is out of range", k);
      for (int64_t in = 0; in < inner; ++in) {
        const int64_t flat = (o * shape[gather_axis] + k) * inner + in;
        unflatten(flat, shape, at);
        at[quantize_axis] /= block;
        int64_t sflat = 0;
        for (int64_t i = 0; i < rank; ++i) sflat += at[i] * sst[i];
        *dst++ = static_cast<float>(value(flat) - zero_point(sflat)) * scales.data<float>()[sflat];
      }
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_contrib_transformer(Registry& r) {
  r["com.microsoft.GroupQueryAttention"] = group_query_attention;
  r["com.microsoft.GatherBlockQuantized"] = gather_block_quantized;
  r["SimplifiedLayerNormalization"] = layer_norm<true>;
}

}  // namespace quantize::exec
