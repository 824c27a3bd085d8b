#!/usr/bin/python3
"""Write a synthetic (random, untrained) LLaMA-shaped ONNX model whose weights go straight to
external data, one tensor at a time, so a model larger than memory can be made (the 7B shape is
27 GB of float32; this machine has 24 GiB and no swap).

The graph is the one ../shared/tools/llama2c-to-onnx/build_llama_onnx.py builds; only where the
weights come from and how they are stored differs. The weights are drawn here, as each one is
needed, with statistics like those of that directory's gen_synth_checkpoint.py: N(0, 0.02^2), a
few input channels scaled x4..x8 (four of them shared by every matrix that reads the residual
stream), and about 1e-4 of the entries replaced by spikes of +-0.15..0.45. Deterministic for a
given --seed.

  tools/synth_llama_stream.py OUT.onnx --dim 4096 --hidden-dim 11008 --n-layers 32 --n-heads 32
"""
import argparse
import os
import sys

import numpy as np
from onnx import TensorProto, mapping, numpy_helper, save_model

ALIGN = 4096  # each tensor starts on a page, so it can be mapped on its own


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--hidden-dim", type=int, default=2048)
    ap.add_argument("--n-layers", type=int, default=12)
    ap.add_argument("--n-heads", type=int, default=12)
    ap.add_argument("--n-kv-heads", type=int, default=0, help="default: --n-heads")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--builder", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                      "shared", "tools", "llama2c-to-onnx"),
                    help="directory of build_llama_onnx.py")
    a = ap.parse_args()
    sys.path.insert(0, a.builder)
    import build_llama_onnx as blo  # the graph's structure

    kv = a.n_kv_heads or a.n_heads
    cfg = blo.Config(a.dim, a.hidden_dim, a.n_layers, a.n_heads, kv, a.vocab_size, a.seq_len, False)
    rng = np.random.default_rng(a.seed)
    shared_outliers = rng.choice(a.dim, size=4, replace=False)

    def spiked(w):
        n = max(1, int(w.size * 1e-4))
        idx = rng.choice(w.size, size=n, replace=False)
        w.reshape(-1)[idx] = (rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.15, 0.45, size=n)).astype(np.float32)
        return w

    def matrix(out_f, in_f):  # [out, in], as build_model expects
        w = rng.standard_normal((out_f, in_f), dtype=np.float32) * np.float32(0.02)
        cols = rng.choice(in_f, size=max(1, in_f // 200), replace=False)
        if in_f == a.dim:
            cols = np.union1d(cols, shared_outliers)
        w[:, cols] *= rng.uniform(4.0, 8.0, size=len(cols)).astype(np.float32)
        return spiked(w)

    def gain(n):
        g = np.abs(rng.normal(1.0, 0.15, size=n)).astype(np.float32)
        if n == a.dim:
            g[shared_outliers] *= 3.0
        return g

    class PerLayer:  # w[name][layer], drawn when build_model asks for it
        def __init__(self, make):
            self.make = make

        def __getitem__(self, layer):
            return self.make()

    D, H, hs = a.dim, a.hidden_dim, a.dim // a.n_heads
    w = {
        "tok_embeddings": spiked(rng.standard_normal((a.vocab_size, D), dtype=np.float32) * np.float32(0.02)),
        "rms_att": PerLayer(lambda: gain(D)), "rms_ffn": PerLayer(lambda: gain(D)),
        "wq": PerLayer(lambda: matrix(D, D)), "wk": PerLayer(lambda: matrix(hs * kv, D)),
        "wv": PerLayer(lambda: matrix(hs * kv, D)), "wo": PerLayer(lambda: matrix(D, D)),
        "w1": PerLayer(lambda: matrix(H, D)), "w2": PerLayer(lambda: matrix(D, H)),
        "w3": PerLayer(lambda: matrix(H, D)),
        "rms_final": gain(D),
    }
    w["wcls"] = spiked(rng.standard_normal((a.vocab_size, D), dtype=np.float32) * np.float32(0.02))

    location = os.path.basename(a.output) + "_data"
    data = open(os.path.join(os.path.dirname(os.path.abspath(a.output)), location), "wb")

    def external(self, name, array):  # replaces GraphBuilder.init: the bytes go to the data file now
        array = np.ascontiguousarray(array)
        if array.nbytes < 1024:
            self.inits.append(numpy_helper.from_array(array, name))
            return name
        data.seek((data.tell() + ALIGN - 1) // ALIGN * ALIGN)
        t = TensorProto(name=name, data_type=mapping.NP_TYPE_TO_TENSOR_TYPE[array.dtype])
        t.dims.extend(array.shape)
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", data.tell()), ("length", array.nbytes)):
            entry = t.external_data.add()
            entry.key, entry.value = key, str(value)
        array.tofile(data)
        self.inits.append(t)
        return name

    blo.GraphBuilder.init = external
    model = blo.build_model(cfg, w, doc="synthetic LLaMA-shaped model (tools/synth_llama_stream.py)",
                            metadata={"source": "synthetic, seed %d" % a.seed})
    data.close()
    save_model(model, a.output)
    print("wrote %s (+ %s, %d bytes)" % (a.output, location, os.path.getsize(os.path.join(
        os.path.dirname(os.path.abspath(a.output)), location))))


if __name__ == "__main__":
    main()
