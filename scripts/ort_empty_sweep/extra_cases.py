"""Hand-built single-node (and a few fused-pattern) models for the empty-tensor sweep.

EXTRA: list of (name, op_label, model, feeds, custom_variants) where custom_variants is a list of
(label, feeds) to run in addition to the generic zero-axis variants (e.g. sequence_lens all 0).
Parameters are initializers (as exporters write them) unless the name says "_fed".
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F, I64, I32, U8, I8 = np.float32, np.int64, np.int32, np.uint8, np.int8
rng = np.random.default_rng(45)
vi = helper.make_tensor_value_info
EXTRA = []


class C:
    def __init__(self, a):
        self.a = np.asarray(a)


def f32(*s, scale=1.0):
    return (rng.standard_normal(s) * scale).astype(F)


def model(nodes, inputs, outputs, inits, opsets):
    g = helper.make_graph(nodes, "g", inputs, [helper.make_value_info(o, onnx.TypeProto()) if isinstance(o, str) else o
                                               for o in outputs], inits)
    ops = [helper.make_opsetid(d, v) for d, v in opsets.items()]
    return helper.make_model(g, opset_imports=ops, ir_version=10)


def mk(op, ins, nout=1, opset=17, domain="", out_types=None, **attrs):
    """One node; plain arrays are fed graph inputs, C(...) initializers, None omitted."""
    names, ginputs, inits, feeds = [], [], [], {}
    for i, x in enumerate(ins):
        if x is None:
            names.append("")
        elif isinstance(x, C):
            names.append(f"c{i}")
            inits.append(numpy_helper.from_array(x.a, f"c{i}"))
        else:
            x = np.asarray(x)
            names.append(f"x{i}")
            dt = TensorProto.STRING if x.dtype == object else helper.np_dtype_to_tensor_dtype(x.dtype)
            ginputs.append(vi(f"x{i}", dt, list(x.shape)))
            feeds[f"x{i}"] = x
    outs = [f"y{k}" if (k < nout) else "" for k in range(nout)]
    if isinstance(nout, (list, tuple)):
        pass
    opsets = {"": opset}
    if domain == "com.microsoft":
        opsets["com.microsoft"] = 1
    elif domain == "ai.onnx.ml":
        opsets["ai.onnx.ml"] = attrs.pop("_mlopset", 3)
    if "opset_attr" in attrs:
        attrs["opset"] = attrs.pop("opset_attr")
    node = helper.make_node(op, names, outs, domain=domain or None, **attrs)
    return model([node], ginputs, outs, inits, opsets), feeds


def mk_outs(op, ins, outs_mask, **kw):
    """Like mk, but only the outputs where outs_mask[k] is true are produced (others '')."""
    m, feeds = mk(op, ins, nout=len(outs_mask), **kw)
    node = m.graph.node[0]
    keep = []
    for k, on in enumerate(outs_mask):
        if not on:
            node.output[k] = ""
        else:
            keep.append(node.output[k])
    while node.output and node.output[-1] == "":
        del node.output[-1]
    outs = [o for o in m.graph.output if o.name in keep]
    del m.graph.output[:]
    m.graph.output.extend(outs)
    return m, feeds


def add(name, op, m_feeds, custom=()):
    m, feeds = m_feeds
    EXTRA.append((name, op, m, feeds, list(custom)))


# ---------------------------------------------------------------- recurrent
T, B, IN, H = 4, 3, 5, 6


def rnn(op, direction, layout, seq, init, outs, extra_attrs=None, wfed=False, peep=False):
    g = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    nd = 2 if direction == "bidirectional" else 1
    X = f32(T, B, IN) if layout == 0 else f32(B, T, IN)
    W, R, Bias = f32(nd, g * H, IN, scale=0.5), f32(nd, g * H, H, scale=0.5), f32(nd, 2 * g * H, scale=0.5)
    wrap = (lambda a: a) if wfed else C
    ins = [X, wrap(W), wrap(R), wrap(Bias)]
    seqlens = np.array([4, 2, 3], I32)
    st = (lambda: f32(nd, B, H)) if layout == 0 else (lambda: f32(B, nd, H))
    ins.append(seqlens if seq else None)
    ins.append(st() if init else None)
    if op == "LSTM":
        ins.append(st() if init else None)
        if peep:
            ins.append(C(f32(nd, 3 * H, scale=0.5)))
    while ins[-1] is None:
        ins.pop()
    nout = 3 if op == "LSTM" else 2
    mask = {"all": [1] * nout, "Y": [1], "Y_h": [0, 1], "Y_c": [0, 0, 1]}[outs]
    kw = dict(opset=14, direction=direction, hidden_size=H, layout=layout, **(extra_attrs or {}))
    custom = []
    if seq:
        xi = [k for k, v in enumerate(ins) if v is seqlens][0]
        custom.append(("sequence_lens all 0", {f"x{xi}": np.zeros(B, I32)}))
        custom.append(("sequence_lens [0, 2, 3]", {f"x{xi}": np.array([0, 2, 3], I32)}))
    return mk_outs(op, ins, mask, **kw), custom


for op in ["LSTM", "GRU", "RNN"]:
    for direction in ["forward", "reverse", "bidirectional"]:
        for layout in [0, 1]:
            for seq in [False, True]:
                for init in [False, True]:
                    if layout == 1 and (seq or init):  # ORT's CPU kernels refuse layout=1 at load: one model shows it
                        continue
                    for outs in (["all", "Y_h"] if direction != "reverse" and layout == 0 else ["all"]):
                        mf, custom = rnn(op, direction, layout, seq, init, outs)
                        add(f"{op}_{direction}_layout{layout}_seq{int(seq)}_init{int(init)}_out{outs}", op, mf, custom)
    add(f"{op}_forward_weights_fed", op, rnn(op, "forward", 0, False, False, "all", wfed=True)[0])
    add(f"{op}_forward_Y_only", op, rnn(op, "forward", 0, False, False, "Y")[0])
add("LSTM_forward_Y_c_only", "LSTM", rnn("LSTM", "forward", 0, False, False, "Y_c")[0])
add("LSTM_peephole_input_forget_clip", "LSTM", *rnn("LSTM", "bidirectional", 0, True, True, "all",
                                                      extra_attrs={"input_forget": 1, "clip": 3.0}, peep=True))
add("GRU_linear_before_reset", "GRU", *rnn("GRU", "bidirectional", 0, True, True, "all",
                                            extra_attrs={"linear_before_reset": 1}))
add("RNN_relu_acts", "RNN", rnn("RNN", "forward", 0, False, False, "all", extra_attrs={"activations": ["Relu"]})[0])

# ---------------------------------------------------------------- Einsum
for eq, shapes in [("bnd,bmd->bnm", [(2, 3, 5), (2, 4, 5)]), ("bnm,bmd->bnd", [(2, 3, 4), (2, 4, 5)]),
                   ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                   ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]), ("bhqk,bhkd->bhqd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
                   ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(3, 3)]), ("ij->ji", [(3, 4)]),
                   ("ij->i", [(3, 4)]), ("ij->", [(3, 4)]), ("i,i->", [(4,), (4,)]), ("i,j->ij", [(3,), (4,)]),
                   ("bi,bi->b", [(2, 4), (2, 4)]), ("bijk->bkji", [(2, 3, 4, 5)]), ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
                   ("ibnd,jbnd->ijbn", [(3, 2, 4, 5), (6, 2, 4, 5)]), ("bn,nd->bd", [(2, 3), (3, 4)]),
                   ("bid,bjd->bij", [(2, 3, 5), (2, 4, 5)]), ("ij,kj->ik", [(3, 4), (5, 4)]),
                   ("bnd,dh->bnh", [(2, 3, 4), (4, 5)]), ("b...d,d->b...", [(2, 3, 4, 5), (5,)])]:
    tag = eq.replace(",", "_").replace("->", "_to_").replace("...", "E")
    add(f"Einsum_{tag}", "Einsum", mk("Einsum", [f32(*s) for s in shapes], equation=eq, opset=12))
add("Einsum_bnd_dh_const", "Einsum", mk("Einsum", [f32(2, 3, 4), C(f32(4, 5))], equation="bnd,dh->bnh", opset=12))

# ---------------------------------------------------------------- normalizations
X4 = f32(2, 32, 5, 6)
for o in [9, 14, 15]:
    add(f"BatchNormalization_o{o}", "BatchNormalization",
        mk("BatchNormalization", [X4, C(f32(32)), C(f32(32)), C(f32(32)), C(np.abs(f32(32)) + 0.5)], opset=o))
add("BatchNormalization_2d", "BatchNormalization",
    mk("BatchNormalization", [f32(3, 7), C(f32(7)), C(f32(7)), C(f32(7)), C(np.abs(f32(7)) + 0.5)], opset=15))
add("BatchNormalization_1d", "BatchNormalization",
    mk("BatchNormalization", [f32(3, 7, 9), C(f32(7)), C(f32(7)), C(f32(7)), C(np.abs(f32(7)) + 0.5)], opset=15))
add("InstanceNormalization", "InstanceNormalization", mk("InstanceNormalization", [X4, C(f32(32)), C(f32(32))]))
add("InstanceNormalization_3d", "InstanceNormalization", mk("InstanceNormalization", [f32(2, 3, 7), C(f32(3)), C(f32(3))]))
for ax in [-1, 1, 2]:
    shp = (2, 3, 4)[ax:] if ax > 0 else (4,)
    add(f"LayerNormalization_axis{ax}", "LayerNormalization",
        mk_outs("LayerNormalization", [f32(2, 3, 4), C(f32(*shp)), C(f32(*shp))], [1, 1, 1], axis=ax, opset=17))
add("LayerNormalization_nobias", "LayerNormalization", mk("LayerNormalization", [f32(2, 3, 4), C(f32(4))], opset=17))
for o in [18, 21]:
    n = 4 if o == 18 else 32
    add(f"GroupNormalization_o{o}", "GroupNormalization",
        mk("GroupNormalization", [X4, C(f32(n)), C(f32(n))], num_groups=4, opset=o))
add("RMSNormalization_o23", "RMSNormalization", mk("RMSNormalization", [f32(2, 3, 4), C(f32(4))], opset=23))
add("LpNormalization", "LpNormalization", mk("LpNormalization", [f32(2, 3, 4)], axis=1, p=2))
add("MeanVarianceNormalization", "MeanVarianceNormalization", mk("MeanVarianceNormalization", [X4], opset=13))
add("LRN", "LRN", mk("LRN", [X4], size=3, alpha=1e-3, beta=0.75, bias=2.0))

# ---------------------------------------------------------------- pooling
P = f32(2, 3, 7, 6)
for k, kw in [("2d", dict(kernel_shape=[3, 3])), ("2d_s2_pads", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
              ("2d_ceil", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)), ("same", dict(kernel_shape=[2, 3], auto_pad="SAME_UPPER"))]:
    add(f"MaxPool_{k}", "MaxPool", mk("MaxPool", [P], **kw))
    add(f"AveragePool_{k}", "AveragePool", mk("AveragePool", [P], **kw))
    add(f"LpPool_{k}", "LpPool", mk("LpPool", [P], p=2, opset=18, **kw))
add("MaxPool_1d", "MaxPool", mk("MaxPool", [f32(2, 3, 9)], kernel_shape=[3], strides=[2]))
add("MaxPool_3d", "MaxPool", mk("MaxPool", [f32(2, 3, 5, 6, 7)], kernel_shape=[2, 2, 2]))
add("AveragePool_1d", "AveragePool", mk("AveragePool", [f32(2, 3, 9)], kernel_shape=[3], strides=[2]))
add("AveragePool_3d", "AveragePool", mk("AveragePool", [f32(2, 3, 5, 6, 7)], kernel_shape=[2, 2, 2]))
add("MaxPool_indices", "MaxPool", mk("MaxPool", [P], nout=2, kernel_shape=[2, 2], strides=[2, 2]))
add("MaxPool_dilations", "MaxPool", mk("MaxPool", [P], kernel_shape=[2, 2], dilations=[2, 2]))
add("MaxPool_u8", "MaxPool", mk("MaxPool", [rng.integers(0, 255, (2, 3, 7, 6)).astype(U8)], kernel_shape=[2, 2]))
add("MaxPool_i8", "MaxPool", mk("MaxPool", [rng.integers(-100, 100, (2, 3, 7, 6)).astype(I8)], kernel_shape=[2, 2]))
for op in ["GlobalAveragePool", "GlobalMaxPool"]:
    add(op, op, mk(op, [P]))
    add(f"{op}_1d", op, mk(op, [f32(2, 3, 9)]))
    add(f"{op}_3d", op, mk(op, [f32(2, 3, 4, 5, 6)]))
add("GlobalLpPool", "GlobalLpPool", mk("GlobalLpPool", [P], p=2))
rois = np.array([[0, 0, 4, 4], [1, 1, 5, 5], [0.5, 0.5, 3, 6]], F)
bidx = np.array([0, 1, 0], I64)
for mode in ["avg", "max"]:
    for ctm in ["half_pixel", "output_half_pixel"]:
        add(f"RoiAlign_{mode}_{ctm}", "RoiAlign",
            mk("RoiAlign", [P, rois, bidx], mode=mode, coordinate_transformation_mode=ctm, output_height=2, output_width=3,
               sampling_ratio=2, spatial_scale=1.0, opset=16))
add("RoiAlign_sampling0", "RoiAlign", mk("RoiAlign", [P, rois, bidx], output_height=2, output_width=3, sampling_ratio=0,
                                         spatial_scale=0.5, opset=16))
add("MaxRoiPool", "MaxRoiPool", mk("MaxRoiPool", [P, np.array([[0, 0, 0, 4, 4], [1, 1, 1, 5, 5], [0, 2, 0, 5, 3]], F)],
                                   pooled_shape=[2, 2], spatial_scale=1.0))
add("MaxUnpool", "MaxUnpool", mk("MaxUnpool", [f32(2, 3, 2, 2), rng.integers(0, 16, (2, 3, 2, 2)).astype(I64)],
                                 kernel_shape=[2, 2], strides=[2, 2], opset=11))

# ---------------------------------------------------------------- Conv family (NCHWc paths: 32 channels)
Xc = f32(2, 32, 9, 8)
for nm, ins, kw in [("32to32_bias", [Xc, C(f32(32, 32, 3, 3, scale=0.1)), C(f32(32))], dict(pads=[1, 1, 1, 1])),
                    ("depthwise", [Xc, C(f32(32, 1, 3, 3))], dict(group=32, pads=[1, 1, 1, 1])),
                    ("groups4_s2", [Xc, C(f32(16, 8, 3, 3))], dict(group=4, strides=[2, 2])),
                    ("1x1", [Xc, C(f32(64, 32, 1, 1))], {}),
                    ("3to32_stem", [f32(2, 3, 9, 8), C(f32(32, 3, 3, 3))], dict(strides=[2, 2], pads=[1, 1, 1, 1])),
                    ("1d", [f32(2, 3, 10), C(f32(4, 3, 3))], dict(pads=[1, 1])),
                    ("3d", [f32(2, 3, 4, 5, 6), C(f32(4, 3, 2, 2, 2))], {}),
                    ("dilated", [Xc, C(f32(8, 32, 3, 3))], dict(dilations=[2, 2])),
                    ("same_upper", [Xc, C(f32(8, 32, 3, 3))], dict(auto_pad="SAME_UPPER", strides=[2, 2])),
                    ("weights_fed", [Xc, f32(8, 32, 3, 3)], {})]:
    add(f"Conv_{nm}", "Conv", mk("Conv", ins, **kw))


def conv_chain(tail):
    """Conv(32->32)+tail: the optimizer fuses / converts to NCHWc (FusedConv, nchwc ops)."""
    inits = [numpy_helper.from_array(f32(32, 32, 3, 3, scale=0.1), "W"), numpy_helper.from_array(f32(32), "Bc")]
    nodes = [helper.make_node("Conv", ["x", "W", "Bc"], ["c"], pads=[1, 1, 1, 1])]
    last = "c"
    for i, (op, extra_in, kw) in enumerate(tail):
        ins = [last]
        for j, a in enumerate(extra_in):
            if isinstance(a, str):
                ins.append(a)
            else:
                inits.append(numpy_helper.from_array(a, f"t{i}_{j}"))
                ins.append(f"t{i}_{j}")
        nodes.append(helper.make_node(op, ins, [f"o{i}"], **kw))
        last = f"o{i}"
    feeds = {"x": f32(2, 32, 9, 8)}
    ginputs = [vi("x", TensorProto.FLOAT, [2, 32, 9, 8])]
    return model(nodes, ginputs, [last], inits, {"": 13}), feeds


add("pattern_Conv_Relu", "FusedConv(pattern)", conv_chain([("Relu", [], {})]))
add("pattern_Conv_Add_Relu", "FusedConv(pattern)", conv_chain([("Add", ["x"], {}), ("Relu", [], {})]))
add("pattern_Conv_BN", "Conv+BN(pattern)", conv_chain([("BatchNormalization", [f32(32), f32(32), f32(32), np.abs(f32(32)) + 1], {})]))
add("pattern_Conv_MaxPool", "nchwc MaxPool(pattern)", conv_chain([("MaxPool", [], dict(kernel_shape=[2, 2], strides=[2, 2]))]))
add("pattern_Conv_AvgPool", "nchwc AveragePool(pattern)", conv_chain([("AveragePool", [], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))]))
add("pattern_Conv_GAP", "nchwc GlobalAveragePool(pattern)", conv_chain([("GlobalAveragePool", [], {})]))
add("pattern_Conv_GMP", "nchwc GlobalMaxPool(pattern)", conv_chain([("GlobalMaxPool", [], {})]))
add("pattern_Conv_Resize", "nchwc Upsample(pattern)", conv_chain([("Resize", ["", np.array([1, 1, 2, 2], F)], dict(mode="nearest"))]))
add("pattern_Conv_Sigmoid_Mul", "FusedConv(pattern)", conv_chain([("Sigmoid", [], {})]))
add("pattern_Conv_Concat", "nchwc(pattern)", conv_chain([("Concat", ["x"], dict(axis=1))]))
XT = f32(2, 4, 3, 5)
for nm, ins, kw in [("s2_outpad", [XT, C(f32(4, 3, 3, 3))], dict(strides=[2, 2], output_padding=[1, 0])),
                    ("groups_bias", [XT, C(f32(4, 2, 3, 3)), C(f32(4))], dict(group=2, pads=[1, 0, 0, 1])),
                    ("output_shape", [XT, C(f32(4, 3, 3, 3))], dict(strides=[2, 2], output_shape=[8, 12])),
                    ("1d", [f32(2, 4, 5), C(f32(4, 3, 3))], dict(strides=[2])),
                    ("3d", [f32(2, 4, 3, 4, 5), C(f32(4, 2, 2, 2, 2))], {}),
                    ("weights_fed", [XT, f32(4, 3, 3, 3)], {})]:
    add(f"ConvTranspose_{nm}", "ConvTranspose", mk("ConvTranspose", ins, **kw))
xq = rng.integers(0, 255, (2, 4, 7, 6)).astype(U8)
wq = rng.integers(-128, 127, (6, 4, 3, 3)).astype(I8)
add("ConvInteger", "ConvInteger", mk("ConvInteger", [xq, C(wq), C(np.uint8(100))], pads=[1, 1, 1, 1], opset=13))
add("ConvInteger_u8u8", "ConvInteger", mk("ConvInteger", [xq, C(wq.view(U8))], opset=13))
add("QLinearConv", "QLinearConv", mk("QLinearConv", [xq, C(np.float32(0.02)), C(np.uint8(128)), C(wq), C(np.float32(0.01)),
                                                      C(np.int8(0)), C(np.float32(0.1)), C(np.uint8(120)),
                                                      C(rng.integers(-200, 200, 6).astype(I32))], pads=[1, 1, 1, 1], opset=13))
add("QLinearConv_s8", "QLinearConv", mk("QLinearConv", [xq.view(I8), C(np.float32(0.02)), C(np.int8(0)), C(wq), C(np.abs(f32(6)) * 0.01 + 1e-3),
                                                         C(np.zeros(6, I8)), C(np.float32(0.1)), C(np.int8(1))], opset=13))
add("DeformConv", "DeformConv", mk("DeformConv", [f32(2, 4, 5, 5), C(f32(3, 4, 3, 3)), f32(2, 18, 3, 3)], opset=19))
add("Col2Im", "Col2Im", mk("Col2Im", [f32(2, 12, 20), C(np.array([5, 6], I64)), C(np.array([2, 2], I64))], opset=18))

# ---------------------------------------------------------------- MatMul family
A = f32(3, 64)
add("MatMul_const_B", "MatMul", mk("MatMul", [f32(2, 3, 64), C(f32(64, 48))]))
add("MatMul_fed", "MatMul", mk("MatMul", [f32(2, 3, 4), f32(2, 4, 5)]))
add("MatMul_bcast", "MatMul", mk("MatMul", [f32(2, 1, 3, 4), f32(5, 4, 6)]))
add("MatMul_1d", "MatMul", mk("MatMul", [f32(4), f32(3, 4, 5)]))
add("Gemm_const", "Gemm", mk("Gemm", [A, C(f32(64, 48)), C(f32(48))]))
add("Gemm_transB_const", "Gemm", mk("Gemm", [A, C(f32(48, 64)), C(f32(48))], transB=1))
add("Gemm_fed", "Gemm", mk("Gemm", [f32(3, 4), f32(4, 5), f32(5)], alpha=0.5, beta=2.0))
add("Gemm_transA", "Gemm", mk("Gemm", [f32(4, 3), C(f32(4, 5))], transA=1))
au = rng.integers(0, 255, (2, 3, 64)).astype(U8)
add("MatMulInteger_const", "MatMulInteger", mk("MatMulInteger", [au, C(rng.integers(-128, 127, (64, 48)).astype(I8)),
                                                                  C(np.uint8(3)), C(np.int8(0))], opset=13))
add("MatMulInteger_fed", "MatMulInteger", mk("MatMulInteger", [au, rng.integers(0, 255, (64, 48)).astype(U8)], opset=13))
add("QLinearMatMul", "QLinearMatMul", mk("QLinearMatMul", [au, C(np.float32(0.02)), C(np.uint8(120)),
                                                            C(rng.integers(-128, 127, (64, 48)).astype(I8)), C(np.float32(0.01)),
                                                            C(np.int8(0)), C(np.float32(0.5)), C(np.uint8(100))], opset=13))
add("QLinearMatMul_fed", "QLinearMatMul", mk("QLinearMatMul", [au, np.float32(0.02), np.uint8(120),
                                                                rng.integers(0, 255, (64, 48)).astype(U8), np.float32(0.01),
                                                                np.uint8(3), np.float32(0.5), np.uint8(100)], opset=13))
add("DynamicQuantizeLinear", "DynamicQuantizeLinear", mk("DynamicQuantizeLinear", [f32(2, 3, 4)], nout=3, opset=13))


def dyn_quant_matmul_pattern():
    """quantize_dynamic's pattern: DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (-> fused MatMulIntegerToFloat)."""
    inits = [numpy_helper.from_array(rng.integers(-128, 127, (64, 48)).astype(I8), "Bq"),
             numpy_helper.from_array(np.float32(0.01), "bs"), numpy_helper.from_array(np.int8(0), "bz"),
             numpy_helper.from_array(f32(48), "bias")]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("MatMulInteger", ["xq", "Bq", "xz", "bz"], ["mi"]),
             helper.make_node("Cast", ["mi"], ["mf"], to=1), helper.make_node("Mul", ["xs", "bs"], ["s"]),
             helper.make_node("Mul", ["mf", "s"], ["y0"]), helper.make_node("Add", ["y0", "bias"], ["y"])]
    return model(nodes, [vi("x", TensorProto.FLOAT, [2, 3, 64])], ["y"], inits, {"": 13}), {"x": f32(2, 3, 64)}


add("pattern_quantize_dynamic_matmul", "MatMulIntegerToFloat(pattern)", dyn_quant_matmul_pattern())

# ---------------------------------------------------------------- Resize, TopK, NMS, CumSum, softmax, reductions
R4 = f32(2, 3, 4, 5)
for mode in ["nearest", "linear", "cubic"]:
    add(f"Resize_{mode}_scales", "Resize", mk("Resize", [R4, None, C(np.array([1, 1, 2, 1.5], F))], mode=mode, opset=19))
    add(f"Resize_{mode}_sizes", "Resize", mk("Resize", [R4, None, None, C(np.array([2, 3, 7, 3], I64))], mode=mode, opset=19))
    add(f"Resize_{mode}_sizes_axes", "Resize", mk("Resize", [R4, None, None, C(np.array([7, 3], I64))], mode=mode, axes=[2, 3],
                                                  opset=19))
    add(f"Resize_{mode}_scales_fed", "Resize", mk("Resize", [R4, None, np.array([1, 1, 2, 1.5], F)], mode=mode, opset=19))
    add(f"Resize_{mode}_sizes_fed", "Resize", mk("Resize", [R4, None, None, np.array([2, 3, 7, 3], I64)], mode=mode, opset=19))
add("Resize_linear_3d", "Resize", mk("Resize", [f32(2, 3, 4), None, C(np.array([1, 1, 2], F))], mode="linear", opset=19))
add("Resize_linear_5d", "Resize", mk("Resize", [f32(2, 3, 4, 5, 6), None, C(np.array([1, 1, 2, 2, 2], F))], mode="linear",
                                     opset=19))
add("Resize_tf_crop", "Resize", mk("Resize", [R4, C(np.array([0, 0, 0.1, 0.2, 1, 1, 0.9, 0.8], F)), C(np.array([1, 1, 2, 2], F))],
                                   mode="linear", coordinate_transformation_mode="tf_crop_and_resize", opset=19))
add("Resize_antialias_down", "Resize", mk("Resize", [R4, None, C(np.array([1, 1, 0.5, 0.6], F))], mode="linear", antialias=1,
                                          opset=19))
add("Resize_antialias_cubic", "Resize", mk("Resize", [R4, None, C(np.array([1, 1, 0.5, 0.6], F))], mode="cubic", antialias=1,
                                           opset=19))
add("Resize_u8_linear", "Resize", mk("Resize", [rng.integers(0, 255, (2, 3, 4, 5)).astype(U8), None,
                                                C(np.array([1, 1, 2, 2], F))], mode="linear", opset=19))
add("Resize_nhwc_linear", "Resize", mk("Resize", [f32(2, 4, 5, 3), None, C(np.array([1, 2, 2, 1], F))], mode="linear", opset=19))
add("Upsample_o9", "Upsample", mk("Upsample", [R4, C(np.array([1, 1, 2, 2], F))], mode="nearest", opset=9))
add("Upsample_o9_linear", "Upsample", mk("Upsample", [R4, C(np.array([1, 1, 2, 2], F))], mode="linear", opset=9))
tk = f32(3, 7)
for ax in [-1, 0]:
    add(f"TopK_axis{ax}", "TopK", mk("TopK", [tk, C(np.array([2], I64))], nout=2, axis=ax))
    add(f"TopK_axis{ax}_kfed", "TopK", mk("TopK", [tk, np.array([2], I64)], nout=2, axis=ax))
    add(f"TopK_axis{ax}_k0", "TopK", mk("TopK", [tk, C(np.array([0], I64))], nout=2, axis=ax))
add("TopK_unsorted_smallest", "TopK", mk("TopK", [f32(2, 3, 9), C(np.array([4], I64))], nout=2, sorted=0, largest=0))
add("TopK_i64", "TopK", mk("TopK", [rng.integers(-9, 9, (3, 7)).astype(I64), C(np.array([3], I64))], nout=2))
boxes = np.abs(f32(2, 6, 4)) * 5
boxes[..., 2:] += boxes[..., :2]
scores = np.abs(f32(2, 3, 6))
for nm, extra in [("plain", []), ("max_out", [C(np.array([2], I64))]),
                  ("thresholds", [C(np.array([3], I64)), C(np.array([0.5], F)), C(np.array([0.1], F))]),
                  ("fed_params", [np.array([3], I64), np.array([0.5], F), np.array([0.1], F)])]:
    for cpb in [0, 1]:
        add(f"NonMaxSuppression_{nm}_center{cpb}", "NonMaxSuppression",
            mk("NonMaxSuppression", [boxes, scores] + extra, center_point_box=cpb, opset=11))
for ex in [0, 1]:
    for rev in [0, 1]:
        add(f"CumSum_ex{ex}_rev{rev}", "CumSum", mk("CumSum", [f32(2, 3, 4), C(np.int64(1))], exclusive=ex, reverse=rev))
add("CumSum_axis_fed", "CumSum", mk("CumSum", [f32(2, 3, 4), np.int64(-1)]))
add("CumProd", "CumProd", mk("CumProd", [f32(2, 3, 4), C(np.int64(1))], opset=26))
for op in ["Softmax", "LogSoftmax", "Hardmax"]:
    for o in [11, 13]:
        for ax in [0, 1, -1]:
            add(f"{op}_o{o}_axis{ax}", op, mk(op, [f32(2, 3, 4)], axis=ax, opset=o))
    add(f"{op}_4d_o13", op, mk(op, [f32(2, 3, 4, 5)], axis=1, opset=13))
for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
           "ReduceLogSumExp", "ReduceSumSquare"]:
    for nm, axes, kd in [("axis1", [1], 1), ("axis_last_kd0", [-1], 0), ("all", None, 0), ("axes02", [0, 2], 1)]:
        ins = [f32(2, 3, 4)] + ([C(np.array(axes, I64))] if axes is not None else [])
        add(f"{op}_{nm}", op, mk(op, ins, keepdims=kd, opset=18))
    add(f"{op}_axes_fed", op, mk(op, [f32(2, 3, 4), np.array([1], I64)], keepdims=0, opset=18))
    add(f"{op}_o13_attr", op, mk(op, [f32(2, 3, 4)], axes=[1], keepdims=0, opset=13) if op != "ReduceSum" else
        mk(op, [f32(2, 3, 4), C(np.array([1], I64))], keepdims=0, opset=13))
    add(f"{op}_i64", op, mk(op, [rng.integers(-4, 4, (2, 3, 4)).astype(I64), C(np.array([1], I64))], keepdims=0, opset=18))
for op in ["ArgMax", "ArgMin"]:
    for ax in [0, 1, -1]:
        add(f"{op}_axis{ax}", op, mk(op, [f32(2, 3, 4)], axis=ax, keepdims=0))
        add(f"{op}_axis{ax}_last", op, mk(op, [f32(2, 3, 4)], axis=ax, select_last_index=1))

# ---------------------------------------------------------------- indexing & shape ops with constant shapes
x = f32(2, 3, 4)
add("Reshape_0_m1", "Reshape", mk("Reshape", [x, C(np.array([0, -1], I64))]))
add("Reshape_m1_4", "Reshape", mk("Reshape", [x, C(np.array([-1, 4], I64))]))
add("Reshape_const_6_4", "Reshape", mk("Reshape", [x, C(np.array([6, 4], I64))]))
add("Reshape_0_0_m1", "Reshape", mk("Reshape", [f32(2, 3, 4, 5), C(np.array([0, 0, -1], I64))]))
add("Reshape_m1_0", "Reshape", mk("Reshape", [x, C(np.array([-1, 0, 2, 2], I64))]))
add("Reshape_allowzero_m1", "Reshape", mk("Reshape", [x, C(np.array([2, -1], I64))], allowzero=1, opset=14))
add("Reshape_shape_fed", "Reshape", mk("Reshape", [x, np.array([4, -1], I64)]))
add("Flatten_axis1", "Flatten", mk("Flatten", [f32(2, 3, 4, 5)], axis=1))
add("Flatten_axis2", "Flatten", mk("Flatten", [f32(2, 3, 4, 5)], axis=2))
add("Expand_const", "Expand", mk("Expand", [f32(3, 1), C(np.array([2, 3, 4], I64))]))
add("Tile_const", "Tile", mk("Tile", [x, C(np.array([2, 1, 3], I64))]))
add("Tile_fed", "Tile", mk("Tile", [x, np.array([2, 1, 3], I64)]))
add("Split_const", "Split", mk("Split", [f32(2, 6, 4), C(np.array([2, 4], I64))], nout=2, axis=1, opset=13))
add("Split_equal", "Split", mk("Split", [f32(2, 6, 4)], nout=3, axis=1, opset=13))
add("Split_num_outputs", "Split", mk("Split", [f32(2, 7, 4)], nout=3, axis=1, num_outputs=3, opset=18))
add("SplitToSequence", "SplitToSequence", mk("SplitToSequence", [f32(2, 6, 4)], axis=1, keepdims=0, opset=13))
add("SplitToSequence_split", "SplitToSequence", mk("SplitToSequence", [f32(2, 6, 4), C(np.array(2, I64))], axis=1, opset=13))
add("Gather_axis0_idx_fed", "Gather", mk("Gather", [f32(5, 4), rng.integers(0, 5, (2, 3)).astype(I64)], axis=0))
add("Gather_axis1", "Gather", mk("Gather", [x, C(np.array([0, 2], I64))], axis=1))
add("Gather_embedding", "Gather", mk("Gather", [C(f32(10, 8)), rng.integers(0, 10, (2, 5)).astype(I64)], axis=0))
add("GatherElements", "GatherElements", mk("GatherElements", [f32(3, 4), rng.integers(0, 3, (2, 4)).astype(I64)], axis=0))
add("GatherND", "GatherND", mk("GatherND", [x, np.array([[0, 1], [1, 2]], I64)]))
add("GatherND_b1", "GatherND", mk("GatherND", [x, np.array([[[1], [0]], [[2], [1]]], I64)], batch_dims=1))
add("ScatterND", "ScatterND", mk("ScatterND", [f32(4, 3), np.array([[0], [2]], I64), f32(2, 3)], opset=18))
add("ScatterElements", "ScatterElements", mk("ScatterElements", [f32(3, 4), np.array([[0, 1], [2, 0]], I64), f32(2, 2)],
                                             axis=1, opset=18))
add("TensorScatter", "TensorScatter", mk("TensorScatter", [f32(2, 3, 8, 4), f32(2, 3, 2, 4), np.array([1, 5], I64)], opset=24))
add("Slice_const", "Slice", mk("Slice", [x, C(np.array([1], I64)), C(np.array([3], I64)), C(np.array([1], I64))]))
add("Slice_neg", "Slice", mk("Slice", [x, C(np.array([-1], I64)), C(np.array([-1000], I64)), C(np.array([2], I64)),
                                       C(np.array([-1], I64))]))
add("Pad_reflect", "Pad", mk("Pad", [f32(2, 3, 4, 5), C(np.array([0, 0, 1, 2, 0, 0, 2, 1], I64))], mode="reflect", opset=19))
add("Pad_edge", "Pad", mk("Pad", [f32(2, 3, 4, 5), C(np.array([0, 0, 1, 2, 0, 0, 2, 1], I64))], mode="edge", opset=19))
add("Pad_wrap", "Pad", mk("Pad", [f32(2, 3, 4, 5), C(np.array([0, 0, 1, 2, 0, 0, 2, 1], I64))], mode="wrap", opset=19))
add("Pad_constant", "Pad", mk("Pad", [f32(2, 3, 4, 5), C(np.array([0, 0, 1, 2, 0, 0, 2, 1], I64))], mode="constant", opset=19))
add("Pad_fed", "Pad", mk("Pad", [f32(2, 3, 4, 5), np.array([0, 0, 1, 2, 0, 0, 2, 1], I64)], mode="reflect", opset=19))
add("DepthToSpace", "DepthToSpace", mk("DepthToSpace", [f32(2, 8, 3, 4)], blocksize=2, mode="CRD"))
add("SpaceToDepth", "SpaceToDepth", mk("SpaceToDepth", [f32(2, 3, 4, 6)], blocksize=2))
add("ReverseSequence_time", "ReverseSequence", mk("ReverseSequence", [f32(4, 3, 5), np.array([4, 2, 3], I64)], batch_axis=1,
                                                  time_axis=0))
add("ReverseSequence_batch", "ReverseSequence", mk("ReverseSequence", [f32(3, 4, 5), np.array([4, 2, 3], I64)], batch_axis=0,
                                                   time_axis=1))
add("Unique", "Unique", mk("Unique", [f32(2, 5)], nout=4, axis=1, opset=11))
add("Unique_flat", "Unique", mk("Unique", [rng.integers(0, 3, (2, 5)).astype(I64)], nout=4, opset=11))
add("NonZero", "NonZero", mk("NonZero", [f32(2, 3)]))
add("Compress", "Compress", mk("Compress", [f32(3, 4), np.array([True, False, True])], axis=0))
add("OneHot", "OneHot", mk("OneHot", [np.array([[0, 2], [1, 1]], I64), C(np.array([3], I64)), C(np.array([0, 1], F))], axis=-1))
add("Trilu", "Trilu", mk("Trilu", [f32(2, 3, 4)]))
add("Det", "Det", mk("Det", [f32(2, 3, 3)]))
add("Transpose", "Transpose", mk("Transpose", [f32(2, 3, 4, 5)], perm=[0, 2, 3, 1]))
add("Concat_const", "Concat", mk("Concat", [f32(2, 3), C(f32(2, 2))], axis=1))
add("Where", "Where", mk("Where", [rng.random((2, 3)) > 0.5, f32(2, 3), C(np.float32(0))]))
add("GridSample_linear", "GridSample", mk("GridSample", [f32(2, 3, 4, 5), f32(2, 6, 7, 2)], opset=20))
add("GridSample_nearest_border", "GridSample", mk("GridSample", [f32(2, 3, 4, 5), f32(2, 6, 7, 2)], mode="nearest",
                                                  padding_mode="border", opset=20))
add("GridSample_cubic", "GridSample", mk("GridSample", [f32(2, 3, 4, 5), f32(2, 6, 7, 2)], mode="cubic", opset=20))
add("GridSample_3d", "GridSample", mk("GridSample", [f32(2, 3, 4, 5, 6), f32(2, 2, 3, 4, 3)], opset=20))
add("AffineGrid", "AffineGrid", mk("AffineGrid", [f32(2, 2, 3), C(np.array([2, 3, 4, 5], I64))], opset=20))
add("DFT", "DFT", mk("DFT", [f32(2, 8, 1), None, C(np.int64(1))], opset=20))
add("DFT_onesided", "DFT", mk("DFT", [f32(2, 8, 1), None, C(np.int64(1))], onesided=1, opset=20))
add("STFT", "STFT", mk("STFT", [f32(2, 32, 1), C(np.int64(4)), C(np.hanning(8).astype(F))], opset=17))
add("TfIdfVectorizer", "TfIdfVectorizer", mk("TfIdfVectorizer", [rng.integers(0, 5, (2, 6)).astype(I32)], mode="TF",
                                             min_gram_length=1, max_gram_length=2, max_skip_count=0,
                                             ngram_counts=[0, 3], ngram_indexes=[0, 1, 2, 3, 4],
                                             pool_int64s=[1, 2, 3, 1, 2, 2, 3], opset=9))
add("StringNormalizer", "StringNormalizer", mk("StringNormalizer", [np.array([["a B", "Cd", "x"]], object)],
                                               case_change_action="LOWER", stopwords=["x"], locale="C"))
add("StringSplit", "StringSplit", mk("StringSplit", [np.array(["a b", "c", ""], object)], nout=2, opset=20))
add("StringConcat", "StringConcat", mk("StringConcat", [np.array(["a", "b"], object), np.array(["c", "d"], object)], opset=20))
add("RegexFullMatch", "RegexFullMatch", mk("RegexFullMatch", [np.array(["ab", "c"], object)], pattern="a.*", opset=20))
add("Multinomial", "Multinomial", mk("Multinomial", [f32(3, 5)], sample_size=4, seed=1.0))
add("RandomNormalLike", "RandomNormalLike", mk("RandomNormalLike", [f32(2, 3)], seed=1.0))
add("Dropout_train", "Dropout", mk("Dropout", [f32(2, 3), C(np.float32(0.5)), C(np.array(True))], nout=2, opset=13))
add("Mod_fmod", "Mod", mk("Mod", [rng.integers(1, 9, (2, 3)).astype(I64), C(np.array([3], I64))]))
add("Div_int_bcast", "Div", mk("Div", [rng.integers(1, 9, (2, 3)).astype(I32), C(np.array([2, 3, 4], I32))]))
add("Pow_bcast", "Pow", mk("Pow", [f32(2, 3), C(np.float32(2))]))
add("Range_fed", "Range", mk("Range", [np.int64(0), np.int64(5), np.int64(1)]))
add("RotaryEmbedding_o23", "RotaryEmbedding", mk("RotaryEmbedding", [f32(2, 3, 4, 8), C(f32(10, 4)), C(f32(10, 4)),
                                                                     rng.integers(0, 10, (2, 4)).astype(I64)], opset=23))
add("RotaryEmbedding_o23_3d", "RotaryEmbedding", mk("RotaryEmbedding", [f32(2, 4, 16), f32(2, 4, 4), f32(2, 4, 4)], num_heads=2,
                                                    opset=23))


# ---------------------------------------------------------------- Attention (opset 23) and subgraphs
def attn23(nm, ins, **kw):
    add(f"Attention_o23_{nm}", "Attention", mk("Attention", ins, nout=kw.pop("nout", 1), opset=23, **kw))


attn23("4d", [f32(2, 3, 4, 8), f32(2, 3, 6, 8), f32(2, 3, 6, 8)])
attn23("4d_causal", [f32(2, 3, 4, 8), f32(2, 3, 6, 8), f32(2, 3, 6, 8)], is_causal=1)
attn23("4d_boolmask", [f32(2, 3, 4, 8), f32(2, 3, 6, 8), f32(2, 3, 6, 8), rng.random((2, 1, 4, 6)) > 0.3])
attn23("4d_floatmask", [f32(2, 3, 4, 8), f32(2, 3, 6, 8), f32(2, 3, 6, 8), f32(4, 6)])
attn23("3d", [f32(2, 4, 24), f32(2, 6, 24), f32(2, 6, 24)], q_num_heads=3, kv_num_heads=3)
attn23("gqa", [f32(2, 4, 4, 8), f32(2, 2, 6, 8), f32(2, 2, 6, 8)])
attn23("past", [f32(2, 3, 4, 8), f32(2, 3, 6, 8), f32(2, 3, 6, 8), None, f32(2, 3, 5, 8), f32(2, 3, 5, 8)], nout=3)


def sdpa_subgraph(masked):
    """q @ k^T / sqrt(d), (mask), softmax, @ v: ORT's optimizer may fuse it."""
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]), helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             helper.make_node("Div", ["qk", "scale"], ["qks"])]
    last = "qks"
    ins = [vi("q", TensorProto.FLOAT, [2, 3, 4, 8]), vi("k", TensorProto.FLOAT, [2, 3, 6, 8]), vi("v", TensorProto.FLOAT, [2, 3, 6, 8])]
    feeds = {"q": f32(2, 3, 4, 8), "k": f32(2, 3, 6, 8), "v": f32(2, 3, 6, 8)}
    if masked:
        nodes.append(helper.make_node("Add", ["qks", "mask"], ["qkm"]))
        ins.append(vi("mask", TensorProto.FLOAT, [2, 1, 1, 6]))
        feeds["mask"] = np.where(rng.random((2, 1, 1, 6)) > 0.3, 0, -1e4).astype(F)
        last = "qkm"
    nodes += [helper.make_node("Softmax", [last], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])]
    return model(nodes, ins, ["y"], [numpy_helper.from_array(np.array(np.sqrt(8), F), "scale")], {"": 13}), feeds


add("pattern_sdpa", "attention(pattern)", sdpa_subgraph(False))
add("pattern_sdpa_mask", "attention(pattern)", sdpa_subgraph(True))


def bert_layer():
    """A BERT-ish encoder block as exported (LayerNorm decomposed? no: opset 17 LayerNormalization), with
    MatMul+Add+Erf-Gelu and residual Add+LayerNorm, so that ORT fuses Attention, BiasGelu, SkipLayerNorm."""
    Hd, N = 16, 2
    t = lambda a, n: numpy_helper.from_array(a, n)  # noqa: E731
    inits = [t(f32(Hd, Hd, scale=0.2), f"W{c}") for c in "qkvo"] + [t(f32(Hd, scale=0.1), f"B{c}") for c in "qkvo"]
    inits += [t(np.array([0, 0, N, Hd // N], I64), "shp"), t(np.array([0, 0, Hd], I64), "shp2"),
              t(np.array(np.sqrt(Hd // N), F), "sc"), t(f32(Hd), "g1"), t(f32(Hd), "b1"), t(f32(Hd, 4 * Hd, scale=0.2), "W1"),
              t(f32(4 * Hd, scale=0.1), "B1"), t(f32(4 * Hd, Hd, scale=0.2), "W2"), t(f32(Hd, scale=0.1), "B2"),
              t(f32(Hd), "g2"), t(f32(Hd), "b2"), t(np.array(np.sqrt(2), F), "sq2"), t(np.array(1, F), "one"),
              t(np.array(0.5, F), "half"), t(np.array(-10000, F), "neg"), t(np.array([1, 2], I64), "ax12")]
    n = []
    for c in "qkv":
        n += [helper.make_node("MatMul", ["x", f"W{c}"], [f"{c}0"]), helper.make_node("Add", [f"{c}0", f"B{c}"], [f"{c}1"]),
              helper.make_node("Reshape", [f"{c}1", "shp"], [f"{c}2"]),
              helper.make_node("Transpose", [f"{c}2"], [f"{c}3"], perm=[0, 2, 3, 1] if c == "k" else [0, 2, 1, 3])]
    n += [helper.make_node("Cast", ["mask"], ["mf"], to=1), helper.make_node("Unsqueeze", ["mf", "ax12"], ["mu"]),
          helper.make_node("Sub", ["one", "mu"], ["mi"]), helper.make_node("Mul", ["mi", "neg"], ["madd"]),
          helper.make_node("MatMul", ["q3", "k3"], ["qk"]), helper.make_node("Div", ["qk", "sc"], ["qks"]),
          helper.make_node("Add", ["qks", "madd"], ["qkm"]), helper.make_node("Softmax", ["qkm"], ["p"], axis=-1),
          helper.make_node("MatMul", ["p", "v3"], ["ctx"]), helper.make_node("Transpose", ["ctx"], ["ctxt"], perm=[0, 2, 1, 3]),
          helper.make_node("Reshape", ["ctxt", "shp2"], ["ctxr"]), helper.make_node("MatMul", ["ctxr", "Wo"], ["o0"]),
          helper.make_node("Add", ["o0", "Bo"], ["o1"]), helper.make_node("Add", ["o1", "x"], ["r1"]),
          helper.make_node("LayerNormalization", ["r1", "g1", "b1"], ["ln1"], axis=-1, epsilon=1e-12),
          helper.make_node("MatMul", ["ln1", "W1"], ["f0"]), helper.make_node("Add", ["f0", "B1"], ["f1"]),
          helper.make_node("Div", ["f1", "sq2"], ["gd"]), helper.make_node("Erf", ["gd"], ["ge"]),
          helper.make_node("Add", ["ge", "one"], ["ga"]), helper.make_node("Mul", ["f1", "ga"], ["gm"]),
          helper.make_node("Mul", ["gm", "half"], ["gelu"]), helper.make_node("MatMul", ["gelu", "W2"], ["h0"]),
          helper.make_node("Add", ["h0", "B2"], ["h1"]), helper.make_node("Add", ["h1", "ln1"], ["r2"]),
          helper.make_node("LayerNormalization", ["r2", "g2", "b2"], ["y"], axis=-1, epsilon=1e-12)]
    ins = [vi("x", TensorProto.FLOAT, [2, 5, Hd]), vi("mask", TensorProto.INT64, [2, 5])]
    feeds = {"x": f32(2, 5, Hd), "mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], I64)}
    return model(n, ins, ["y"], inits, {"": 17}), feeds


add("pattern_bert_layer", "Attention+BiasGelu+SkipLayerNorm(pattern)", bert_layer())


def scan_model():
    body = helper.make_graph([helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])],
                             "body", [vi("s_in", TensorProto.FLOAT, [3]), vi("x_t", TensorProto.FLOAT, [3])],
                             [vi("s_out", TensorProto.FLOAT, [3]), vi("y_t", TensorProto.FLOAT, [3])])
    m = model([helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], num_scan_inputs=1, body=body)],
              [vi("s0", TensorProto.FLOAT, [3]), vi("xs", TensorProto.FLOAT, [5, 3])], ["s", "ys"], [], {"": 16})
    return m, {"s0": f32(3), "xs": f32(5, 3)}


add("Scan_sum", "Scan", scan_model())

# ---------------------------------------------------------------- com.microsoft
MS = dict(domain="com.microsoft")
Bn, S, Hd, N = 2, 5, 16, 2
xin = f32(Bn, S, Hd)


def ms(name, op, ins, **kw):
    add(f"ms_{name}", f"com.microsoft.{op}", mk(op, ins, **MS, **kw))


ms("Attention", "Attention", [xin, C(f32(Hd, 3 * Hd, scale=0.2)), C(f32(3 * Hd))], num_heads=N)
ms("Attention_mask_2d", "Attention", [xin, C(f32(Hd, 3 * Hd, scale=0.2)), C(f32(3 * Hd)), np.array([[1, 1, 1, 0, 0], [1] * 5], I32)],
   num_heads=N)
ms("Attention_mask_index_1d", "Attention", [xin, C(f32(Hd, 3 * Hd, scale=0.2)), C(f32(3 * Hd)), np.array([3, 5], I32)], num_heads=N)
ms("Attention_unidirectional", "Attention", [xin, C(f32(Hd, 3 * Hd, scale=0.2)), C(f32(3 * Hd))], num_heads=N, unidirectional=1)
ms("Attention_past", "Attention", [xin, C(f32(Hd, 3 * Hd, scale=0.2)), C(f32(3 * Hd)), None, f32(2, Bn, N, 3, Hd // N)],
   num_heads=N, nout=2, unidirectional=1)
ms("Attention_attention_bias", "Attention", [xin, C(f32(Hd, 3 * Hd, scale=0.2)), C(f32(3 * Hd)), None, None, f32(1, N, S, S)],
   num_heads=N)
ms("MultiHeadAttention", "MultiHeadAttention", [xin, f32(Bn, 6, Hd), f32(Bn, 6, Hd)], num_heads=N)
ms("MultiHeadAttention_kpm", "MultiHeadAttention", [xin, f32(Bn, 6, Hd), f32(Bn, 6, Hd), None,
                                                    np.array([[1, 1, 1, 1, 0, 0], [1] * 6], I32)], num_heads=N)
ms("MultiHeadAttention_bias", "MultiHeadAttention", [xin, f32(Bn, 6, Hd), f32(Bn, 6, Hd), C(f32(3 * Hd))], num_heads=N)
ms("MultiHeadAttention_attn_bias", "MultiHeadAttention", [xin, f32(Bn, 6, Hd), f32(Bn, 6, Hd), None, None, f32(Bn, N, S, 6)],
   num_heads=N)
ms("MultiHeadAttention_bnsh_kv", "MultiHeadAttention", [xin, f32(Bn, N, 6, Hd // N), f32(Bn, N, 6, Hd // N)], num_heads=N)
ms("MultiHeadAttention_past", "MultiHeadAttention", [xin, f32(Bn, S, Hd), f32(Bn, S, Hd), None, None, None,
                                                     f32(Bn, N, 3, Hd // N), f32(Bn, N, 3, Hd // N)], num_heads=N, nout=3)
ms("GroupQueryAttention", "GroupQueryAttention",
   [f32(Bn, S, 32), f32(Bn, S, 16), f32(Bn, S, 16), None, None, np.array([S - 1, S - 1], I32), np.array(S, I32)],
   num_heads=4, kv_num_heads=2, nout=3)
ms("GroupQueryAttention_past", "GroupQueryAttention",
   [f32(Bn, 1, 32), f32(Bn, 1, 16), f32(Bn, 1, 16), f32(Bn, 2, 4, 8), f32(Bn, 2, 4, 8), np.array([4, 4], I32),
    np.array(5, I32)], num_heads=4, kv_num_heads=2, nout=3)
ms("GroupQueryAttention_rotary", "GroupQueryAttention",
   [f32(Bn, S, 32), f32(Bn, S, 16), f32(Bn, S, 16), None, None, np.array([S - 1, S - 1], I32), np.array(S, I32),
    C(f32(16, 8)), C(f32(16, 8))], num_heads=2, kv_num_heads=1, nout=3, do_rotary=1)
ms("SkipLayerNormalization", "SkipLayerNormalization", [xin, f32(Bn, S, Hd), C(f32(Hd)), C(f32(Hd)), C(f32(Hd))], nout=4)
ms("SkipLayerNormalization_2d", "SkipLayerNormalization", [f32(S, Hd), f32(S, Hd), C(f32(Hd)), C(f32(Hd))])
ms("SkipLayerNormalization_bcast_skip", "SkipLayerNormalization", [xin, f32(1, S, Hd), C(f32(Hd)), C(f32(Hd))])
ms("SkipSimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", [xin, f32(Bn, S, Hd), C(f32(Hd))], nout=4)
add("SimplifiedLayerNormalization_onnx", "SimplifiedLayerNormalization", mk("SimplifiedLayerNormalization", [xin, C(f32(Hd))],
                                                                            opset=17))
ms("BiasGelu", "BiasGelu", [xin, C(f32(Hd))])
ms("FastGelu", "FastGelu", [xin, C(f32(Hd))])
ms("FastGelu_nobias", "FastGelu", [xin])
ms("Gelu", "Gelu", [xin])
ms("QuickGelu", "QuickGelu", [xin], alpha=1.702)
ms("FusedConv_relu", "FusedConv", [f32(2, 4, 7, 6), C(f32(8, 4, 3, 3)), C(f32(8))], activation="Relu", pads=[1, 1, 1, 1])
ms("FusedConv_sum", "FusedConv", [f32(2, 4, 7, 6), C(f32(8, 4, 3, 3)), C(f32(8)), f32(2, 8, 5, 4)], activation="Relu")
ms("FusedGemm", "FusedGemm", [f32(3, 4), C(f32(4, 5)), C(f32(5))], activation="LeakyRelu", activation_alpha=0.1)
ms("FusedMatMul", "FusedMatMul", [f32(2, 3, 4), f32(2, 5, 4)], transB=1, alpha=0.5)
ms("FusedMatMul_transA", "FusedMatMul", [f32(2, 4, 3), f32(2, 4, 5)], transA=1)
ms("FusedMatMul_transBatch", "FusedMatMul", [f32(3, 2, 4), f32(2, 4, 5)], transBatchA=1)
ms("TransposeMatMul", "TransposeMatMul", [f32(2, 4, 3), f32(2, 4, 5)], transA=1)
qin = rng.integers(0, 255, (Bn, S, Hd)).astype(U8)
ms("QAttention", "QAttention", [qin, C(rng.integers(-128, 127, (Hd, 3 * Hd)).astype(I8)), C(f32(3 * Hd)), C(np.float32(0.02)),
                                C(np.float32(0.01)), None, C(np.uint8(128)), C(np.int8(0))], num_heads=N)
ms("QAttention_mask", "QAttention", [qin, C(rng.integers(-128, 127, (Hd, 3 * Hd)).astype(I8)), C(f32(3 * Hd)),
                                     C(np.float32(0.02)), C(np.float32(0.01)), np.array([3, 5], I32), C(np.uint8(128)),
                                     C(np.int8(0))], num_heads=N)
ms("DynamicQuantizeMatMul", "DynamicQuantizeMatMul", [f32(2, 3, 64), C(rng.integers(-128, 127, (64, 48)).astype(I8)),
                                                      C(np.float32(0.01)), C(np.int8(0)), C(f32(48))])
ms("DynamicQuantizeMatMul_perchannel", "DynamicQuantizeMatMul", [f32(3, 64), C(rng.integers(-128, 127, (64, 48)).astype(I8)),
                                                                 C(np.abs(f32(48)) * 0.01)])
ms("MatMulIntegerToFloat", "MatMulIntegerToFloat", [au, C(rng.integers(-128, 127, (64, 48)).astype(I8)), np.float32(0.02),
                                                    C(np.float32(0.01)), np.uint8(128), C(np.int8(0)), C(f32(48))])
ms("MatMulInteger16", "MatMulInteger16", [rng.integers(-99, 99, (3, 4)).astype(np.int16),
                                          rng.integers(-99, 99, (4, 5)).astype(np.int16)])
Kq, Nq, blk = 64, 48, 32
ms("MatMulNBits", "MatMulNBits", [f32(2, 3, Kq), C(rng.integers(0, 255, (Nq, Kq // blk, blk // 2)).astype(U8)),
                                  C(np.abs(f32(Nq * Kq // blk)) * 0.01)], K=Kq, N=Nq, bits=4, block_size=blk)
ms("MatMulNBits_acc4", "MatMulNBits", [f32(3, Kq), C(rng.integers(0, 255, (Nq, Kq // blk, blk // 2)).astype(U8)),
                                       C(np.abs(f32(Nq * Kq // blk)) * 0.01), C(rng.integers(0, 255, (Nq * ((Kq // blk + 1) // 2),)).astype(U8))],
   K=Kq, N=Nq, bits=4, block_size=blk, accuracy_level=4)
ms("MatMulNBits_8bit", "MatMulNBits", [f32(3, Kq), C(rng.integers(0, 255, (Nq, Kq // blk, blk)).astype(U8)),
                                       C(np.abs(f32(Nq * Kq // blk)) * 0.01)], K=Kq, N=Nq, bits=8, block_size=blk)
ms("GatherBlockQuantized", "GatherBlockQuantized", [C(rng.integers(0, 255, (10, 32)).astype(U8)),
                                                    rng.integers(0, 10, (2, 3)).astype(I64), C(np.abs(f32(10, 2)) * 0.01)],
   block_size=32, bits=4, quantize_axis=1)
ms("EmbedLayerNormalization", "EmbedLayerNormalization",
   [rng.integers(0, 20, (Bn, S)).astype(I32), rng.integers(0, 2, (Bn, S)).astype(I32), C(f32(20, Hd)), C(f32(16, Hd)),
    C(f32(2, Hd)), C(f32(Hd)), C(f32(Hd)), np.array([[1, 1, 1, 0, 0], [1] * 5], I32)], nout=3)
ms("EmbedLayerNormalization_nosegment", "EmbedLayerNormalization",
   [rng.integers(0, 20, (Bn, S)).astype(I32), None, C(f32(20, Hd)), C(f32(16, Hd)), None, C(f32(Hd)), C(f32(Hd))], nout=2)
ms("RotaryEmbedding", "RotaryEmbedding", [f32(Bn, S, Hd), rng.integers(0, 10, (Bn, S)).astype(I64), C(f32(16, 4)), C(f32(16, 4))],
   num_heads=N)
ms("RotaryEmbedding_bnsh", "RotaryEmbedding", [f32(Bn, N, S, 8), rng.integers(0, 10, (Bn, S)).astype(I64), C(f32(16, 4)),
                                               C(f32(16, 4))])
ms("RotaryEmbedding_offset", "RotaryEmbedding", [f32(Bn, S, Hd), np.array([2], I64), C(f32(16, 4)), C(f32(16, 4))], num_heads=N)
ms("QLinearAdd", "QLinearAdd", [qin, C(np.float32(0.02)), C(np.uint8(128)), rng.integers(0, 255, (Bn, S, Hd)).astype(U8),
                                C(np.float32(0.03)), C(np.uint8(120)), C(np.float32(0.05)), C(np.uint8(128))])
ms("QLinearAdd_bcast", "QLinearAdd", [qin, C(np.float32(0.02)), C(np.uint8(128)), C(rng.integers(0, 255, (Hd,)).astype(U8)),
                                      C(np.float32(0.03)), C(np.uint8(120)), C(np.float32(0.05)), C(np.uint8(128))])
ms("QLinearMul", "QLinearMul", [qin, C(np.float32(0.02)), C(np.uint8(128)), rng.integers(0, 255, (Bn, S, Hd)).astype(U8),
                                C(np.float32(0.03)), C(np.uint8(120)), C(np.float32(0.05)), C(np.uint8(128))])
ms("QLinearSigmoid", "QLinearSigmoid", [qin, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(1 / 256)), C(np.uint8(0))])
ms("QLinearLeakyRelu", "QLinearLeakyRelu", [qin, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(0.02)), C(np.uint8(128))],
   alpha=0.1)
ms("QLinearSoftmax", "QLinearSoftmax", [qin, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(1 / 256)), C(np.uint8(0))],
   axis=-1, opset_attr=13)
ms("QLinearSoftmax_o12_axis1", "QLinearSoftmax", [qin, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(1 / 256)),
                                                  C(np.uint8(0))], axis=1, opset_attr=12)
q4 = rng.integers(0, 255, (2, 4, 7, 6)).astype(U8)
ms("QLinearAveragePool", "QLinearAveragePool", [q4, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(0.02)), C(np.uint8(128))],
   kernel_shape=[3, 3], pads=[1, 1, 1, 1])
ms("QLinearAveragePool_nhwc", "QLinearAveragePool", [q4, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(0.02)),
                                                     C(np.uint8(128))], kernel_shape=[2, 2], channels_last=1)
ms("QLinearGlobalAveragePool", "QLinearGlobalAveragePool", [q4, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(0.02)),
                                                            C(np.uint8(128))], channels_last=0)
ms("QLinearGlobalAveragePool_nhwc", "QLinearGlobalAveragePool", [q4, C(np.float32(0.02)), C(np.uint8(128)), C(np.float32(0.02)),
                                                                 C(np.uint8(128))], channels_last=1)
ms("QLinearConcat", "QLinearConcat", [C(np.float32(0.05)), C(np.uint8(128)), qin, C(np.float32(0.02)), C(np.uint8(128)),
                                      rng.integers(0, 255, (Bn, 3, Hd)).astype(U8), C(np.float32(0.03)), C(np.uint8(120))], axis=1)
ms("QLinearWhere", "QLinearWhere", [rng.random((Bn, S, Hd)) > 0.5, qin, C(np.float32(0.02)), C(np.uint8(128)),
                                    rng.integers(0, 255, (Bn, S, Hd)).astype(U8), C(np.float32(0.03)), C(np.uint8(120)),
                                    C(np.float32(0.05)), C(np.uint8(128))])
ms("QGemm", "QGemm", [rng.integers(0, 255, (3, 64)).astype(U8), C(np.float32(0.02)), C(np.uint8(128)),
                      C(rng.integers(-128, 127, (64, 48)).astype(I8)), C(np.float32(0.01)), C(np.int8(0)),
                      C(rng.integers(-99, 99, (48,)).astype(I32)), C(np.float32(0.1)), C(np.uint8(128))])
ms("QGemm_float_out", "QGemm", [rng.integers(0, 255, (3, 64)).astype(U8), C(np.float32(0.02)), C(np.uint8(128)),
                                C(rng.integers(-128, 127, (48, 64)).astype(I8)), C(np.float32(0.01)), C(np.int8(0))], transB=1)
ms("QLinearConv_nhwc", "QLinearConv", [rng.integers(0, 255, (2, 7, 6, 4)).astype(U8), C(np.float32(0.02)), C(np.uint8(128)),
                                       C(wq), C(np.float32(0.01)), C(np.int8(0)), C(np.float32(0.1)), C(np.uint8(120))],
   channels_last=1, pads=[1, 1, 1, 1])
ms("NhwcMaxPool", "NhwcMaxPool", [rng.integers(0, 255, (2, 7, 6, 4)).astype(U8)], kernel_shape=[2, 2])
ms("QuantizeLinear", "QuantizeLinear", [xin, C(np.float32(0.02)), C(np.uint8(128))])
ms("DequantizeLinear", "DequantizeLinear", [qin, C(np.float32(0.02)), C(np.uint8(128))])
ms("CDist", "CDist", [f32(3, 4), f32(5, 4)], metric="euclidean")
ms("CDist_sqeuclidean", "CDist", [f32(3, 4), C(f32(5, 4))], metric="sqeuclidean")
ms("CropAndResize", "CropAndResize", [f32(2, 3, 7, 6), np.array([[0, 0, 0.5, 0.5], [0.1, 0.2, 0.9, 1.0], [0, 0, 1, 1]], F),
                                      np.array([0, 1, 1], I32), C(np.array([3, 4], I32))])
ms("ExpandDims", "ExpandDims", [f32(2, 3), C(np.int32(1))])
ms("Inverse", "Inverse", [f32(2, 3, 3)])
ms("Trilu", "Trilu", [f32(2, 3, 4)], upper=0)
ms("Unique", "Unique", [f32(7)], nout=3)
ms("GridSample", "GridSample", [f32(2, 3, 4, 5), f32(2, 6, 7, 2)])
ms("MaxpoolWithMask", "MaxpoolWithMask", [f32(2, 3, 6, 6), rng.integers(0, 2, (2, 3, 6, 6)).astype(I32)], kernel_shape=[2, 2],
   strides=[2, 2])
ms("UnfoldTensor", "UnfoldTensor", [f32(2, 7, 3)], dim=1, size=3, step=2)
ms("ConvTransposeWithDynamicPads", "ConvTransposeWithDynamicPads", [f32(2, 4, 3, 5), C(f32(4, 3, 3, 3)), np.array([1, 0, 0, 1], I64)],
   strides=[2, 2])
ms("DynamicTimeWarping", "DynamicTimeWarping", [np.abs(f32(1, 4, 6))])
ms("NGramRepeatBlock", "NGramRepeatBlock", [rng.integers(0, 5, (2, 6)).astype(I64), f32(2, 5)], ngram_size=2)
ms("MurmurHash3", "MurmurHash3", [rng.integers(0, 99, (2, 3)).astype(I32)], positive=1)
ms("Tokenizer", "Tokenizer", [np.array([["ab cd", "e"], ["fg", ""]], object)], mark=0, mincharnum=1, pad_value="#",
   separators=[" "])
ms("WordConvEmbedding", "WordConvEmbedding", [rng.integers(0, 10, (2, 3, 5)).astype(I32), C(f32(4, 1, 2, 3)), C(f32(4)),
                                              C(f32(10, 3))], conv_window_size=2, char_embedding_size=3, embedding_size=4)
ms("Range", "Range", [np.int64(0), np.int64(5), np.int64(1)])
ms("Pad", "Pad", [f32(2, 3, 4), np.array([0, 1, 1, 0, 1, 1], I64)], mode="reflect")
ms("GatherND", "GatherND", [f32(2, 3, 4), np.array([[0, 1], [1, 2]], I64)])
ms("ScaledSiLU", "ScaledSiLU", [xin])
ms("GatedAdd", "GatedAdd", [xin, f32(Bn, S, Hd), f32(Bn, S, 1)])
ms("GatedRMSNorm", "GatedRMSNorm", [xin, C(f32(Hd)), f32(Bn, S, Hd)])
ms("BranchwiseRMSNorm", "BranchwiseRMSNorm", [f32(Bn, S, 2, Hd)], num_branches=2)
ms("CausalConvWithState", "CausalConvWithState", [f32(Bn, Hd, S), C(f32(Hd, 1, 4)), C(f32(Hd))], nout=2)
ms("CausalConvWithState_past", "CausalConvWithState", [f32(Bn, Hd, S), C(f32(Hd, 1, 4)), C(f32(Hd)), f32(Bn, Hd, 3)], nout=2)
ms("LinearAttention", "LinearAttention", [f32(Bn, S, Hd), f32(Bn, S, Hd), f32(Bn, S, Hd), None, f32(Bn, S, N), f32(Bn, S, N)],
   q_num_heads=N, kv_num_heads=N, nout=2)
ms("LinearAttentionGate", "LinearAttentionGate", [f32(Bn, S, N), C(f32(N)), C(f32(N)), f32(Bn, S, N)], nout=2)
ms("MoE", "MoE", [f32(S, Hd), f32(S, 4), C(f32(4, Hd, 32, scale=0.2)), C(f32(4, 32)), C(f32(4, 32, Hd, scale=0.2)), C(f32(4, Hd))],
   k=2, activation_type="relu")
ms("MoE_3d", "MoE", [f32(Bn, S, Hd), f32(Bn * S, 4), C(f32(4, Hd, 32, scale=0.2)), None, C(f32(4, 32, Hd, scale=0.2))], k=1)
ms("DynamicQuantizeLSTM", "DynamicQuantizeLSTM",
   [f32(T, B, IN), C(rng.integers(-128, 127, (1, IN, 4 * H)).astype(I8)), C(rng.integers(-128, 127, (1, H, 4 * H)).astype(I8)),
    C(f32(1, 8 * H)), None, None, None, None, C(np.array([0.01], F)), C(np.array([0], I8)), C(np.array([0.01], F)),
    C(np.array([0], I8))], hidden_size=H, nout=3)
ms("BifurcationDetector", "BifurcationDetector", [rng.integers(0, 9, (5,)).astype(I64), rng.integers(0, 9, (4,)).astype(I64),
                                                  np.array(1, I64), rng.integers(0, 9, (5,)).astype(I64)], nout=2, min_ngram_size=1,
   max_ngram_size=3)
ms("SampleOp", "SampleOp", [f32(2, 3)])
add("Affine_onnx", "Affine", mk("Affine", [f32(2, 3)], alpha=2.0, beta=1.0, opset=7))
add("ScaledTanh_onnx", "ScaledTanh", mk("ScaledTanh", [f32(2, 3)], alpha=2.0, beta=1.0, opset=7))
add("ParametricSoftplus_onnx", "ParametricSoftplus", mk("ParametricSoftplus", [f32(2, 3)], alpha=2.0, beta=1.0, opset=7))
add("ImageScaler_onnx", "ImageScaler", mk("ImageScaler", [f32(2, 3, 4, 5)], bias=[1.0, 2.0, 3.0], scale=2.0, opset=7))
add("Crop_onnx", "Crop", mk("Crop", [f32(2, 3, 6, 7)], border=[1, 1, 1, 1], opset=7))
add("Scale_onnx", "Scale", mk("Scale", [f32(2, 3)], scale=2.0, opset=7))
add("MeanVarianceNormalization_o9", "MeanVarianceNormalization", mk("MeanVarianceNormalization", [f32(2, 3, 4, 5)], opset=9))

# ---------------------------------------------------------------- ai.onnx.ml
ML = dict(domain="ai.onnx.ml")
Xm = f32(4, 3)


def ml(name, op, ins, nout=1, mlopset=3, **kw):
    add(f"ml_{name}", f"ai.onnx.ml.{op}", mk(op, ins, nout=nout, _mlopset=mlopset, **ML, **kw))


ml("ArrayFeatureExtractor", "ArrayFeatureExtractor", [Xm, C(np.array([0, 2], I64))])
ml("ArrayFeatureExtractor_fed", "ArrayFeatureExtractor", [Xm, np.array([0, 2], I64)])
ml("Binarizer", "Binarizer", [Xm], threshold=0.1)
ml("CategoryMapper", "CategoryMapper", [np.array([1, 2, 7], I64)], cats_int64s=[1, 2], cats_strings=["a", "b"], default_string="?")
ml("FeatureVectorizer", "FeatureVectorizer", [f32(4, 2), f32(4, 3)], inputdimensions=[2, 3])
ml("Imputer", "Imputer", [Xm], imputed_value_floats=[1.0, 2.0, 3.0], replaced_value_float=0.0)
ml("LabelEncoder_str_int", "LabelEncoder", [np.array(["a", "c", "z"], object)], keys_strings=["a", "c"], values_int64s=[1, 2],
   default_int64=-1, mlopset=2)
ml("LabelEncoder_int_float", "LabelEncoder", [np.array([[1, 5], [3, 1]], I64)], keys_int64s=[1, 3], values_floats=[0.5, 1.5],
   mlopset=2)
ml("LinearClassifier", "LinearClassifier", [Xm], nout=2, coefficients=list(f32(9)), intercepts=list(f32(3)),
   classlabels_ints=[0, 1, 2], post_transform="SOFTMAX")
ml("LinearClassifier_binary", "LinearClassifier", [Xm], nout=2, coefficients=list(f32(3)), intercepts=list(f32(1)),
   classlabels_ints=[0, 1], post_transform="LOGISTIC")
ml("LinearRegressor", "LinearRegressor", [Xm], coefficients=list(f32(6)), intercepts=list(f32(2)), targets=2)
ml("Normalizer_L2", "Normalizer", [Xm], norm="L2")
ml("Normalizer_MAX", "Normalizer", [Xm], norm="MAX")
ml("OneHotEncoder", "OneHotEncoder", [np.array([[1, 2], [3, 1]], I64)], cats_int64s=[1, 2, 3], zeros=1)
ml("Scaler", "Scaler", [Xm], offset=[0.1, 0.2, 0.3], scale=[2.0, 3.0, 4.0])
sv = list(f32(4 * 3))
ml("SVMClassifier_rbf", "SVMClassifier", [Xm], nout=2, classlabels_ints=[0, 1], vectors_per_class=[2, 2], support_vectors=sv,
   coefficients=list(f32(4)), rho=[0.1], kernel_type="RBF", kernel_params=[0.5, 0.0, 3.0])
ml("SVMClassifier_linear_3class_proba", "SVMClassifier", [Xm], nout=2, classlabels_ints=[0, 1, 2], vectors_per_class=[1, 1, 2],
   support_vectors=sv, coefficients=list(f32(8)), rho=list(f32(3)), kernel_type="LINEAR", prob_a=list(f32(3)),
   prob_b=list(f32(3)), kernel_params=[0.5, 0.0, 3.0])
ml("SVMClassifier_linear_nosv", "SVMClassifier", [Xm], nout=2, classlabels_ints=[0, 1, 2], coefficients=list(f32(9)),
   rho=list(f32(3)), kernel_type="LINEAR", kernel_params=[0.5, 0.0, 3.0])
ml("SVMRegressor", "SVMRegressor", [Xm], n_supports=4, support_vectors=sv, coefficients=list(f32(4)), rho=[0.1],
   kernel_type="RBF", kernel_params=[0.5, 0.0, 3.0])
tree = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0], nodes_values=[0.0, 0.0, 0.0],
            nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0])
ml("TreeEnsembleRegressor", "TreeEnsembleRegressor", [Xm], n_targets=1, target_treeids=[0, 0], target_nodeids=[1, 2],
   target_ids=[0, 0], target_weights=[1.0, -1.0], **tree)
ml("TreeEnsembleClassifier", "TreeEnsembleClassifier", [Xm], nout=2, classlabels_int64s=[0, 1], class_treeids=[0, 0],
   class_nodeids=[1, 2], class_ids=[0, 1], class_weights=[1.0, 1.0], **tree)
ml("TreeEnsembleRegressor_f64", "TreeEnsembleRegressor", [Xm.astype(np.float64)], n_targets=1, target_treeids=[0, 0],
   target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, -1.0], **tree)
ml("ZipMap", "ZipMap", [f32(4, 2)], classlabels_int64s=[0, 1], out_types=None)


def zipmap_after_classifier():
    nodes = [helper.make_node("LinearClassifier", ["x"], ["lab", "prob"], domain="ai.onnx.ml", coefficients=list(f32(9)),
                              intercepts=list(f32(3)), classlabels_ints=[0, 1, 2], post_transform="SOFTMAX"),
             helper.make_node("ZipMap", ["prob"], ["zm"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2])]
    out_zm = helper.make_tensor_sequence_value_info("zm", 0, None)
    seq_map = onnx.TypeProto()
    seq_map.sequence_type.elem_type.map_type.key_type = TensorProto.INT64
    seq_map.sequence_type.elem_type.map_type.value_type.tensor_type.elem_type = TensorProto.FLOAT
    del out_zm
    return model(nodes, [vi("x", TensorProto.FLOAT, [4, 3])], ["lab", helper.make_value_info("zm", seq_map)], [],
                 {"": 13, "ai.onnx.ml": 3}), {"x": Xm}


add("ml_LinearClassifier_ZipMap", "ai.onnx.ml.ZipMap", zipmap_after_classifier())


def tree_ensemble5():
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain="ai.onnx.ml", aggregate_function=1, n_targets=1,
                            nodes_featureids=[0], nodes_splits=numpy_helper.from_array(np.array([0.0], F)),
                            nodes_modes=numpy_helper.from_array(np.array([0], U8)), nodes_truenodeids=[0],
                            nodes_trueleafs=[1], nodes_falsenodeids=[1], nodes_falseleafs=[1], tree_roots=[0],
                            leaf_targetids=[0, 0], leaf_weights=numpy_helper.from_array(np.array([1.0, -1.0], F)),
                            post_transform=0)
    return model([node], [vi("x", TensorProto.FLOAT, [4, 3])], ["y"], [], {"": 21, "ai.onnx.ml": 5}), {"x": Xm}


add("ml_TreeEnsemble_o5", "ai.onnx.ml.TreeEnsemble", tree_ensemble5())


# ---------------------------------------------------------------- additions (second pass)
# Recurrent: sequence length 0 fed consistently (X with T=0 and sequence_lens all 0; T made dynamic).
for op in ["LSTM", "GRU", "RNN"]:
    for direction in ["forward", "bidirectional"]:
        (m, feeds), _ = rnn(op, direction, 0, True, True, "all")
        xs = dict(feeds)
        x0 = xs["x0"]
        seq_name = [k for k, v in feeds.items() if v.dtype == np.int32][0]
        add(f"{op}_{direction}_T0_seqlens0", op, (m, feeds),
            [("X T=0 and sequence_lens all 0", {"x0": np.zeros((0,) + x0.shape[1:], F), seq_name: np.zeros(B, I32)},
              {"x0": [0]}),
             ("X T=0, batch 0, sequence_lens [0], initial states batch 0",
              {k: np.zeros([0 if (k == "x0" and a in (0, 1)) or (k != "x0" and k != seq_name and a == 1) or
                            (k == seq_name) else s for a, s in enumerate(v.shape)], v.dtype) for k, v in feeds.items()},
              {k: ([0, 1] if k == "x0" else [0] if k == seq_name else [1]) for k in feeds})])
# Einsum with one operand an initializer: can a client's empty input alone kill it?
for eq, s0, s1 in [("bnd,bmd->bnm", (2, 3, 5), (2, 4, 5)), ("ij,kj->ik", (3, 4), (5, 4)), ("b...d,d->b...", (2, 3, 4, 5), (5,)),
                   ("ibnd,jbnd->ijbn", (3, 2, 4, 5), (6, 2, 4, 5)), ("bid,jd->bij", (2, 3, 5), (4, 5))]:
    tag = eq.replace(",", "_").replace("->", "_to_").replace("...", "E")
    add(f"Einsum_{tag}_second_const", "Einsum", mk("Einsum", [f32(*s0), C(f32(*s1))], equation=eq, opset=12))


def attention23_from_hidden():
    """x [B, S, 16] -> MatMul -> Reshape [0, 0, 2, 8] -> Transpose -> Attention(23) -> back: heads come from constants."""
    t = lambda a, n: numpy_helper.from_array(a, n)  # noqa: E731
    inits = [t(f32(16, 16, scale=0.2), f"W{c}") for c in "qkv"] + [t(np.array([0, 0, 2, 8], I64), "s4"),
                                                                    t(np.array([0, 0, 16], I64), "s3")]
    n = []
    for c in "qkv":
        n += [helper.make_node("MatMul", ["x", f"W{c}"], [f"{c}0"]), helper.make_node("Reshape", [f"{c}0", "s4"], [f"{c}1"]),
              helper.make_node("Transpose", [f"{c}1"], [f"{c}2"], perm=[0, 2, 1, 3])]
    n += [helper.make_node("Attention", ["q2", "k2", "v2"], ["a"], is_causal=1),
          helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]), helper.make_node("Reshape", ["at", "s3"], ["y"])]
    return model(n, [vi("x", TensorProto.FLOAT, [2, 5, 16])], ["y"], inits, {"": 23}), {"x": f32(2, 5, 16)}


add("pattern_attention23_from_hidden", "Attention(from hidden)", attention23_from_hidden())


def mha_from_hidden():
    """x [B, S, 16] -> com.microsoft.MultiHeadAttention(q=k=v=MatMul(x, W)): batch/sequence 0 from the client."""
    t = lambda a, n: numpy_helper.from_array(a, n)  # noqa: E731
    inits = [t(f32(16, 16, scale=0.2), f"W{c}") for c in "qkv"]
    n = [helper.make_node("MatMul", ["x", f"W{c}"], [f"{c}0"]) for c in "qkv"]
    n += [helper.make_node("MultiHeadAttention", ["q0", "k0", "v0"], ["y"], domain="com.microsoft", num_heads=2)]
    return model(n, [vi("x", TensorProto.FLOAT, [2, 5, 16])], ["y"], inits, {"": 17, "com.microsoft": 1}), {"x": f32(2, 5, 16)}


add("pattern_mha_from_hidden", "com.microsoft.MultiHeadAttention(from hidden)", mha_from_hidden())
ms("MRotaryEmbedding", "MRotaryEmbedding", [f32(Bn, S, Hd), rng.integers(0, 10, (3, Bn, S)).astype(I64), C(f32(16, 4)),
                                            C(f32(16, 4))], num_heads=N, mrope_section=[2, 1, 1])
ms("MatMulBnb4", "MatMulBnb4", [f32(3, 64), C(rng.integers(0, 255, (48 * 64 // 2,)).astype(U8)),
                                C(np.abs(f32(48 * 64 // 64)) + 0.1)], K=64, N=48, block_size=64, quant_type=1)
ms("DecoderMaskedMultiHeadAttention", "DecoderMaskedMultiHeadAttention",
   [f32(Bn, 1, Hd), f32(Bn, 1, Hd), f32(Bn, 1, Hd), None, None, f32(Bn, N, 6, Hd // N), f32(Bn, N, 6, Hd // N), np.array(3, I32)],
   num_heads=N, past_present_share_buffer=1, nout=3)
