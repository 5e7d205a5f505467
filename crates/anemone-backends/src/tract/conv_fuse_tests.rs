//! [`fuse_convs`] on tract's CPU runtime, where [`FusedConv`] evaluates as
//! the ops it replaced: the fused model must compute what ONNX Runtime
//! computed for the original (an independent engine's reference).

use super::*;
use crate::tract::pool_fuse::{cudnn_geometry, CudnnMaxPoolMark};
use crate::tract::{ops, typed};
use std::path::{Path, PathBuf};
use tract_onnx::tract_core::ops::cnn::MaxPool;

fn fixture(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated")
        .join(name);
    assert!(
        dir.join("case.json").exists(),
        "fixture {} is missing: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// An ONNX model as anemone hands it to tract's runtimes (decluttered).
fn load(path: &Path) -> TypedModel {
    let file = crate::onnx::read(path).expect("read");
    let mut proto = file.proto;
    crate::onnx::canonicalize_symbols(&mut proto);
    ops::prepare_proto(&mut proto);
    typed(crate::onnx::to_tract(path, &proto).expect("parse")).expect("typed")
}

fn npy(path: &Path) -> Tensor {
    let t = anemone_core::npy::read(std::fs::File::open(path).unwrap()).unwrap();
    crate::tract::convert::to_tract(&t).unwrap()
}

fn run(model: &TypedModel, input: &Tensor) -> Tensor {
    let out = model
        .clone()
        .into_runnable()
        .expect("plan")
        .run(tvec!(input.clone().into_tvalue()))
        .expect("run");
    out[0].clone().into_tensor()
}

fn rel_l2(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (
        got.to_plain_array_view::<f32>().unwrap(),
        want.to_plain_array_view::<f32>().unwrap(),
    );
    let num: f64 = g
        .iter()
        .zip(w.iter())
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let den: f64 = w
        .iter()
        .map(|b| (*b as f64).powi(2))
        .sum::<f64>()
        .max(1e-30);
    (num / den).sqrt()
}

fn fused_ops(model: &TypedModel) -> Vec<&FusedConv> {
    model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<FusedConv>())
        .collect()
}

#[test]
fn precision_parses_its_values_and_explains_others() {
    assert_eq!(Precision::parse("fp32"), Ok(Precision::Fp32));
    assert_eq!(Precision::parse(" TF32 "), Ok(Precision::Tf32));
    assert_eq!(Precision::default(), Precision::Fp32);
    let e = Precision::parse("fp8").unwrap_err();
    assert!(
        e.contains(PRECISION_KEY) && e.contains("fp32, tf32, fp16"),
        "{e}"
    );
    assert_eq!(Precision::parse("half"), Ok(Precision::Fp16));
    for v in Precision::VALUES {
        assert_eq!(Precision::parse(v).unwrap().as_str(), v);
    }
}

/// ResNet-18: every convolution fused, the block-ending ReLUs with their
/// residual adds, the three strided shortcuts read without Downsample, and
/// the output still ONNX Runtime's.
#[test]
fn resnet18_fuses_every_conv_and_still_matches_onnx_runtime() {
    let dir = fixture("resnet18");
    let model = load(&dir.join("model.onnx"));
    let convs = model.nodes().iter().filter(|n| n.op_is::<Conv>()).count();
    assert_eq!(convs, 17, "tract made the three 1×1 shortcuts EinSums");
    let fused = fuse_convs(model, Precision::Tf32).expect("fuse");
    assert!(
        !fused.nodes().iter().any(|n| n.op_is::<Conv>()),
        "a Conv was left"
    );
    let ops = fused_ops(&fused);
    assert_eq!(ops.len(), 20);
    assert!(ops.iter().all(|op| op.precision == Precision::Tf32));
    assert_eq!(
        ops.iter().filter(|op| op.relu).count(),
        17,
        "stem + 2 per block"
    );
    assert_eq!(
        ops.iter().filter(|op| op.residual).count(),
        8,
        "one per block"
    );
    let strided_1x1 = ops
        .iter()
        .filter(|op| op.conv.pool_spec.kernel_shape[..] == [1, 1])
        .filter(|op| op.conv.pool_spec.strides()[..] == [2, 2])
        .count();
    assert_eq!(strided_1x1, 3, "the three shortcuts keep their stride");
    assert!(!fused.nodes().iter().any(|n| n.op_is::<Downsample>()));
    let relus = fused
        .nodes()
        .iter()
        .filter(|n| n.op_as::<TypedBinOp>().is_some_and(|b| b.0.is::<Max>()))
        .count();
    assert_eq!(relus, 0, "every ReLU went into a convolution");

    let input = npy(&dir.join("run0_in_0.npy"));
    let want = npy(&dir.join("run0_out_0.npy"));
    let err = rel_l2(&run(&fused, &input), &want);
    assert!(
        err < 1e-4,
        "fused ResNet-18 against ONNX Runtime: {err:.2e}"
    );

    // What the CUDA backend hands tract-cuda: the stem's max pool marked for
    // cuDNN (3×3, stride 2, pad 1), no pooling left as slices.
    let cuda = for_cuda(load(&dir.join("model.onnx")), Precision::Fp32, false).expect("for_cuda");
    let pools: Vec<_> = cuda
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<CudnnMaxPoolMark>())
        .collect();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].0.pool_spec.kernel_shape[..], [3, 3]);
    assert!(!cuda
        .nodes()
        .iter()
        .any(|n| n.op_is::<MaxPool>() || n.op().name() == "Slice"));
    let err = rel_l2(&run(&cuda, &input), &want);
    assert!(
        err < 1e-4,
        "ResNet-18 as the CUDA backend prepares it: {err:.2e}"
    );
}

/// cuDNN's max pool computes its output size rounding down and pads both
/// sides alike: ceil mode or uneven padding stays with the slices.
#[test]
fn only_pools_cudnn_sizes_alike_are_marked() {
    use tract_onnx::tract_core::ops::cnn::PoolSpec;
    use tract_onnx::tract_core::ops::nn::DataFormat;
    let pool = |padding: PaddingSpec| {
        MaxPool::new(
            PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec!(3, 3),
                padding,
                dilations: None,
                strides: Some(tvec!(2, 2)),
                input_channels: 4,
                output_channels: 4,
            },
            None,
        )
    };
    let fact = f32::fact([2, 4, 10, 10]);
    let even = PaddingSpec::ExplicitOnnxPool(tvec!(1, 1), tvec!(1, 1), false);
    assert_eq!(
        cudnn_geometry(&pool(even), &fact),
        Some([[3, 3], [1, 1], [2, 2]])
    );
    let ceil = PaddingSpec::ExplicitOnnxPool(tvec!(0, 0), tvec!(0, 0), true);
    assert_eq!(cudnn_geometry(&pool(ceil), &fact), None, "ceil mode");
    // Before 1, after 0 on H: the same output size as cuDNN's pad 1, but
    // cuDNN would pad the bottom too.
    let uneven = PaddingSpec::ExplicitOnnxPool(tvec!(1, 1), tvec!(0, 1), false);
    assert_eq!(cudnn_geometry(&pool(uneven), &fact), None, "uneven padding");
    // Half pools too (the fp16 precision's model): cuDNN pools half tensors.
    let half = f16::fact([2, 4, 10, 10]);
    assert_eq!(
        cudnn_geometry(&pool(PaddingSpec::Valid), &half),
        Some([[3, 3], [0, 0], [2, 2]]),
        "f16"
    );
    let int = i32::fact([2, 4, 10, 10]);
    assert_eq!(cudnn_geometry(&pool(PaddingSpec::Valid), &int), None, "i32");
}

/// x → conv → relu, where the conv's output is also a model output: the
/// ReLU must stay separate (fusing it would change that output).
#[test]
fn a_conv_output_read_elsewhere_keeps_its_relu_apart() {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, 2, 5, 5])).unwrap();
    let w: Vec<f32> = (0..2 * 2 * 9)
        .map(|i| ((i * 37) % 11) as f32 - 5.0)
        .collect();
    let w = tract_ndarray::ArrayD::from_shape_vec(vec![2, 2, 3, 3], w)
        .unwrap()
        .into_tensor();
    let w = model.add_const("w", w).unwrap();
    let b = model.add_const("b", tensor1(&[0.5f32, -1.0])).unwrap();
    let spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec!(3, 3),
        padding: PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)),
        dilations: None,
        strides: None,
        input_channels: 2,
        output_channels: 2,
    };
    let conv = Conv::new(spec, KernelFormat::OIHW, 1, None);
    let y = model.wire_node("conv", conv, &[x, w, b]).unwrap()[0];
    let zero = model.add_const("zero", tensor4(&[[[[0f32]]]])).unwrap();
    let r = model.wire_node("relu", max(), &[y, zero]).unwrap()[0];
    model.select_output_outlets(&[y, r]).unwrap();

    let fused = fuse_convs(model.clone(), Precision::Fp32).unwrap();
    let ops = fused_ops(&fused);
    assert_eq!(ops.len(), 1);
    assert!(!ops[0].relu && !ops[0].residual);
    let data: Vec<f32> = (0..50)
        .map(|i| ((i * 7919) % 100) as f32 / 10.0 - 5.0)
        .collect();
    let input = tract_ndarray::ArrayD::from_shape_vec(vec![1, 2, 5, 5], data)
        .unwrap()
        .into_tensor();
    let (want, got) = (
        model
            .into_runnable()
            .unwrap()
            .run(tvec!(input.clone().into_tvalue()))
            .unwrap(),
        fused
            .into_runnable()
            .unwrap()
            .run(tvec!(input.into_tvalue()))
            .unwrap(),
    );
    for (g, w) in got.iter().zip(want.iter()) {
        assert_eq!(
            rel_l2(&g.clone().into_tensor(), &w.clone().into_tensor()),
            0.0
        );
    }
}

/// fp16: the model computes in half precision inside, its convolutions
/// fused on half tensors, float32 at its edges, within half precision's
/// error of ONNX Runtime's float32 output.
#[test]
fn fp16_fuses_half_convolutions_and_keeps_float32_edges() {
    let dir = fixture("small_convnet");
    let model = load(&dir.join("model.onnx"));
    let half = for_cuda(model.clone(), Precision::Fp16, false).expect("fp16");
    assert!(
        !half.nodes().iter().any(|n| n.op_is::<Conv>()),
        "a convolution was left unfused"
    );
    let fused = half
        .nodes()
        .iter()
        .filter(|n| n.op_is::<FusedConv>())
        .collect::<Vec<_>>();
    assert!(!fused.is_empty());
    for n in &fused {
        let op = n.op_as::<FusedConv>().unwrap();
        assert_eq!(op.precision, Precision::Fp16);
        for i in &n.inputs {
            let fact = half.outlet_fact(*i).unwrap();
            assert_eq!(fact.datum_type, f16::datum_type(), "{} input", n.name);
        }
        assert!(
            half.node_input_facts(n.id).unwrap()[1].konst.is_some(),
            "{}: weights are not constant after the translation",
            n.name
        );
    }
    let input = npy(&dir.join("run0_in_0.npy"));
    let want = npy(&dir.join("run0_out_0.npy"));
    let got = run(&half, &input);
    assert_eq!(
        got.datum_type(),
        f32::datum_type(),
        "the output stays float32"
    );
    let err = rel_l2(&got, &want);
    assert!(
        err > 1e-6 && err < 2e-2,
        "fp16 against ONNX Runtime: {err:.2e}"
    );
    let fp32 = for_cuda(model, Precision::Fp32, false).expect("fp32");
    assert!(!fused_ops(&fp32).is_empty());
    assert!(rel_l2(&run(&fp32, &input), &want) < 1e-5);
}

/// ResNet-18 in fp16 fuses as in float32 (20 convolutions, 8 residuals,
/// the strided shortcuts), and still computes ONNX Runtime's output within
/// half precision's error.
#[test]
fn resnet18_in_fp16_fuses_as_in_fp32_and_still_matches_onnx_runtime() {
    // ResNet-18's graph an eighth as wide on 64x64: the same nodes to fuse,
    // 1/800 of the work (in fp16 on the CPU the full model took 22 s).
    let dir = fixture("resnet18_narrow");
    let half = for_cuda(load(&dir.join("model.onnx")), Precision::Fp16, false).expect("fp16");
    let ops = fused_ops(&half);
    assert_eq!(ops.len(), 20);
    assert_eq!(ops.iter().filter(|op| op.residual).count(), 8);
    assert_eq!(ops.iter().filter(|op| op.relu).count(), 17);
    // Its stem's max pool is cuDNN's in half precision too, not the
    // Pad/Slice/Max form (whose pad value is uploaded on every call, which
    // a CUDA graph cannot replay).
    let pools = half
        .nodes()
        .iter()
        .filter(|n| n.op_is::<CudnnMaxPoolMark>())
        .collect::<Vec<_>>();
    assert_eq!(pools.len(), 1);
    let pool_input = half.outlet_fact(pools[0].inputs[0]).unwrap();
    assert_eq!(pool_input.datum_type, f16::datum_type());
    let input = npy(&dir.join("run0_in_0.npy"));
    let want = npy(&dir.join("run0_out_0.npy"));
    let err = rel_l2(&run(&half, &input), &want);
    assert!(err < 2e-2, "fp16 ResNet-18 against ONNX Runtime: {err:.2e}");
}
