//! The memory layout of the 4-D activations between anemone's cuDNN
//! operators (`cuda_runtime`): NCHW, ONNX's and tract's order, or NHWC, the
//! order the tensor cores' convolution kernels read.
//!
//! On NCHW tensors cuDNN turns each convolution's input into NHWC and its
//! output back around every tensor-core kernel: in ResNet-18 at batch 16 in
//! TF32 those transposes were 418 of 1,049 µs of GPU time
//! (docs/PERFORMANCE.md). With the activations kept in NHWC from one cuDNN
//! operator to the next, a model pays for two conversions, at its first
//! convolution and after its last, instead of two per convolution: on an
//! H200 that took the GPU time of that call from 1,036 to 625 µs (31
//! kernels instead of 91). The calls did not get faster while their time
//! was the host's, and batch-1 calls got about 1 ms slower. Once CUDA
//! graphs (`cuda_graph`) took the host's share away, TF32 calls ran 22–30%
//! faster in NHWC and float32 ones slower (docs/PERFORMANCE.md, "CUDA
//! graphs"). So [`Layout::default_for`] picks NHWC for a model whose
//! convolutions all run in TF32 when graphs are on, NCHW otherwise, and
//! [`LAYOUT_ENV`] overrides it.
//!
//! A tensor's fact keeps its NCHW shape whatever its layout: only the cuDNN
//! operators know that their bytes are in NHWC order. So every edge between
//! an NHWC operator and anything else (tract's operators, the model's
//! inputs and outputs) gets a conversion, which [`insert_relayouts`] wires;
//! that decision is portable and tested here, the conversion itself is
//! `cuda_relayout`'s.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// The order of a 4-D activation's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Batch, channels, rows, columns: ONNX's order.
    Nchw,
    /// Batch, rows, columns, channels: each pixel's channels together.
    Nhwc,
}

/// The environment variable that, set to `nhwc` or `nchw`, runs the cuDNN
/// operators of every model in that layout (unset: [`Layout::default_for`]).
pub const LAYOUT_ENV: &str = "ANEMONE_TRACT_CUDA_LAYOUT";

impl Layout {
    /// The layout [`LAYOUT_ENV`] asks for, or `default` where it is unset
    /// (an unknown value is ignored with a warning).
    pub fn configured(default: Layout) -> Layout {
        Self::parse(std::env::var(LAYOUT_ENV).ok().as_deref(), default)
    }

    /// [`Layout::configured`] with the environment's value given.
    pub fn parse(set: Option<&str>, default: Layout) -> Layout {
        match set.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("nhwc") => Layout::Nhwc,
            Some("nchw") => Layout::Nchw,
            Some("") | None => default,
            Some(other) => {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    tracing::warn!(
                        value = other,
                        default = default.as_str(),
                        "{LAYOUT_ENV} is neither nchw nor nhwc; using the default"
                    )
                });
                default
            }
        }
    }

    /// The layout of a model's cuDNN operators when [`LAYOUT_ENV`] is
    /// unset: NHWC where every convolution runs on the tensor cores (TF32 or
    /// half, `tensor_cores`) and calls are replayed from CUDA graphs
    /// (`graphs`), NCHW otherwise. On an H200 with graphs, NHWC made TF32
    /// ResNet-18 calls 22–30% faster and float32 ones slower; without
    /// graphs it made no call faster and batch-1 calls slower
    /// (docs/PERFORMANCE.md).
    pub fn default_for(tensor_cores: bool, graphs: bool) -> Layout {
        if tensor_cores && graphs {
            Layout::Nhwc
        } else {
            Layout::Nchw
        }
    }

    /// The element strides of a packed tensor of NCHW `shape` in this
    /// layout, in NCHW order (as cuDNN's descriptors take them). A shape
    /// that is not 4-D is packed in its own order.
    pub fn strides(self, shape: &[usize]) -> Vec<i32> {
        let packed = |shape: &[usize]| {
            let mut strides = vec![1i32; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * shape[i + 1] as i32;
            }
            strides
        };
        match (self, shape) {
            (Layout::Nhwc, &[_, c, h, w]) => {
                let (c, h, w) = (c as i32, h as i32, w as i32);
                vec![h * w * c, 1, w * c, c]
            }
            _ => packed(shape),
        }
    }

    /// The layout's name, as [`LAYOUT_ENV`] takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

/// A `[K, C, R, S]` convolution kernel with its bytes in KRSC order (the
/// filter layout of NHWC convolutions), its shape unchanged.
pub fn krsc(kernel: &Tensor) -> TractResult<Tensor> {
    ensure!(kernel.rank() == 4, "a 4-D kernel, not {:?}", kernel.shape());
    let shape: TVec<usize> = kernel.shape().into();
    let permuted = kernel.clone().permute_axes(&[0, 2, 3, 1])?;
    // The same elements, reinterpreted: the fact stays [K, C, R, S].
    permuted.into_shape(&shape)
}

/// Wires a conversion on every edge between an NHWC operator and anything
/// else, and returns how many it wired.
///
/// `nhwc_slots(node)` says which of a node's inputs are NHWC activations:
/// `Some(slots)` for an NHWC operator (its output is NHWC too), `None` for
/// every other node. `relayout(layout)` makes the operator that writes its
/// input in `layout`. A producer's output is converted once for all its
/// readers in the other layout; the model's outputs are always NCHW.
pub fn insert_relayouts(
    model: &mut TypedModel,
    nhwc_slots: impl Fn(&TypedNode) -> Option<TVec<usize>>,
    relayout: impl Fn(Layout) -> Box<dyn TypedOp>,
) -> TractResult<usize> {
    let nhwc: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| nhwc_slots(n).is_some())
        .map(|n| n.id)
        .collect();
    let reads_nhwc = |model: &TypedModel, inlet: InletId| {
        nhwc_slots(model.node(inlet.node)).is_some_and(|slots| slots.contains(&inlet.slot))
    };
    let mut wired = 0;
    // Into NHWC: each NHWC activation input whose producer is not NHWC.
    let mut converted: HashMap<OutletId, OutletId> = HashMap::new();
    for &id in &nhwc {
        let slots = nhwc_slots(model.node(id)).expect("listed above");
        for slot in slots {
            let source = model.node(id).inputs[slot];
            if nhwc.contains(&source.node) {
                continue;
            }
            let to = match converted.get(&source) {
                Some(&to) => to,
                None => {
                    let name = format!("{}.to-nhwc", model.node(source.node).name);
                    let to = model.wire_node(name, relayout(Layout::Nhwc), &[source])?[0];
                    wired += 1;
                    converted.insert(source, to);
                    to
                }
            };
            model.add_edge(to, InletId::new(id, slot))?;
        }
    }
    // Back to NCHW: each NHWC output read by anything else, or a model output.
    for &id in &nhwc {
        let out = OutletId::new(id, 0);
        let others: Vec<InletId> = model.node(id).outputs[0]
            .successors
            .iter()
            .copied()
            .filter(|&inlet| !reads_nhwc(model, inlet))
            .collect();
        let is_output = model.outputs.contains(&out);
        if others.is_empty() && !is_output {
            continue;
        }
        let name = format!("{}.to-nchw", model.node(id).name);
        let back = model.wire_node(name, relayout(Layout::Nchw), &[out])?[0];
        wired += 1;
        for inlet in others {
            model.add_edge(back, inlet)?;
        }
        for o in model.outputs.iter_mut().filter(|o| **o == out) {
            *o = back;
        }
    }
    Ok(wired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the conversion (`Some`) or for any one-input
    /// operator (`None`): passes its input through.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Pass(Option<Layout>);

    impl Op for Pass {
        fn name(&self) -> StaticName {
            format!("Pass({:?})", self.0).into()
        }
        op_as_typed_op!();
    }

    impl EvalOp for Pass {
        op_out_of_plan!();

        fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
            Ok(inputs)
        }
    }

    impl TypedOp for Pass {
        as_op!();
        fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
            Ok(tvec!(inputs[0].without_value()))
        }
    }

    /// A node that stands for an NHWC operator when its name starts with
    /// `nhwc` (conversions, named after their producer, do not): every input
    /// of it is an activation.
    fn slots(node: &TypedNode) -> Option<TVec<usize>> {
        let conversion = node.op_as::<Pass>().is_some_and(|p| p.0.is_some());
        (node.name.starts_with("nhwc") && !conversion).then(|| (0..node.inputs.len()).collect())
    }

    fn relayout(layout: Layout) -> Box<dyn TypedOp> {
        Box::new(Pass(Some(layout)))
    }

    fn unary(model: &mut TypedModel, name: &str, input: OutletId) -> OutletId {
        model.wire_node(name, Pass(None), &[input]).unwrap()[0]
    }

    fn add(model: &mut TypedModel, name: &str, a: OutletId, b: OutletId) -> OutletId {
        use tract_onnx::tract_core::ops::math::add;
        model.wire_node(name, add(), &[a, b]).unwrap()[0]
    }

    /// The layouts of the conversions between `from` and `to`, in order
    /// (`to` reached from `from` through conversions only).
    fn conversions(model: &TypedModel, from: &str, to: &str) -> Vec<Layout> {
        let to = model.node_by_name(to).unwrap();
        let mut found = vec![];
        for &input in &to.inputs {
            let mut at = input;
            let mut path = vec![];
            while let Some(Pass(Some(layout))) = model.node(at.node).op_as::<Pass>() {
                path.push(*layout);
                at = model.node(at.node).inputs[0];
            }
            if model.node(at.node).name == from {
                path.reverse();
                found = path;
            }
        }
        found
    }

    /// How many conversions into `layout` read `producer`'s output.
    fn conversions_of(model: &TypedModel, producer: &str, layout: Layout) -> usize {
        model
            .nodes()
            .iter()
            .filter(|n| n.op_as::<Pass>() == Some(&Pass(Some(layout))))
            .filter(|n| model.node(n.inputs[0].node).name == producer)
            .count()
    }

    fn count(model: &TypedModel) -> usize {
        model
            .nodes()
            .iter()
            .filter(|n| n.op_as::<Pass>().is_some_and(|p| p.0.is_some()))
            .count()
    }

    #[test]
    fn a_chain_of_nhwc_operators_converts_once_on_each_side() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 3, 8, 8])).unwrap();
        let a = unary(&mut model, "nhwc-a", x);
        let b = unary(&mut model, "nhwc-b", a);
        let c = unary(&mut model, "plain-c", b);
        model.select_output_outlets(&[c]).unwrap();
        let wired = insert_relayouts(&mut model, slots, relayout).unwrap();
        assert_eq!(wired, 2);
        assert_eq!(count(&model), 2);
        assert_eq!(conversions(&model, "x", "nhwc-a"), [Layout::Nhwc]);
        assert_eq!(conversions(&model, "nhwc-a", "nhwc-b"), []);
        assert_eq!(conversions(&model, "nhwc-b", "plain-c"), [Layout::Nchw]);
        model.into_decluttered().unwrap();
    }

    #[test]
    fn a_residual_and_a_shared_producer_are_converted_once() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 3, 8, 8])).unwrap();
        let stem = unary(&mut model, "plain-stem", x);
        // Two NHWC readers of one plain producer: one conversion.
        let a = unary(&mut model, "nhwc-a", stem);
        let sum = add(&mut model, "nhwc-sum", a, stem);
        // One NHWC output read by an NHWC node and two plain ones (and as a
        // model output): one conversion back for all of them.
        let p = unary(&mut model, "plain-p", sum);
        let q = unary(&mut model, "plain-q", sum);
        let r = unary(&mut model, "nhwc-r", sum);
        model.select_output_outlets(&[p, q, r, sum]).unwrap();
        insert_relayouts(&mut model, slots, relayout).unwrap();
        assert_eq!(conversions(&model, "plain-stem", "nhwc-a"), [Layout::Nhwc]);
        assert_eq!(
            conversions(&model, "plain-stem", "nhwc-sum"),
            [Layout::Nhwc]
        );
        assert_eq!(conversions(&model, "nhwc-a", "nhwc-sum"), []);
        assert_eq!(conversions(&model, "nhwc-sum", "nhwc-r"), []);
        assert_eq!(conversions(&model, "nhwc-sum", "plain-p"), [Layout::Nchw]);
        assert_eq!(conversions(&model, "nhwc-sum", "plain-q"), [Layout::Nchw]);
        assert_eq!(
            conversions_of(&model, "plain-stem", Layout::Nhwc),
            1,
            "one conversion of the stem for both readers"
        );
        assert_eq!(
            conversions_of(&model, "nhwc-sum", Layout::Nchw),
            1,
            "one conversion back of the sum for every reader"
        );
        // Every model output is NCHW: no output is an NHWC node's own.
        for o in &model.outputs {
            assert!(
                slots(model.node(o.node)).is_none(),
                "output {o:?} is {}",
                model.node(o.node).name
            );
        }
        model.into_decluttered().unwrap();
    }

    #[test]
    fn no_nhwc_operator_no_conversion() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 3, 8, 8])).unwrap();
        let a = unary(&mut model, "plain-a", x);
        model.select_output_outlets(&[a]).unwrap();
        assert_eq!(insert_relayouts(&mut model, slots, relayout).unwrap(), 0);
        assert_eq!(count(&model), 0);
    }

    #[test]
    fn nhwc_strides_keep_each_pixels_channels_together() {
        assert_eq!(Layout::Nchw.strides(&[2, 3, 4, 5]), [60, 20, 5, 1]);
        assert_eq!(Layout::Nhwc.strides(&[2, 3, 4, 5]), [60, 1, 15, 3]);
        assert_eq!(Layout::Nhwc.strides(&[2, 3, 4]), [12, 4, 1]);
    }

    #[test]
    fn the_setting_overrides_a_default_that_is_nhwc_only_for_tf32_with_graphs() {
        use Layout::{Nchw, Nhwc};
        assert_eq!(Layout::default_for(true, true), Nhwc);
        assert_eq!(Layout::default_for(true, false), Nchw);
        assert_eq!(Layout::default_for(false, true), Nchw);
        assert_eq!(Layout::default_for(false, false), Nchw);
        for default in [Nchw, Nhwc] {
            assert_eq!(Layout::parse(None, default), default);
            assert_eq!(Layout::parse(Some(""), default), default);
            assert_eq!(Layout::parse(Some(" NHWC "), default), Nhwc);
            assert_eq!(Layout::parse(Some("nchw"), default), Nchw);
            assert_eq!(Layout::parse(Some("rows"), default), default);
        }
    }

    #[test]
    fn a_krsc_kernel_keeps_its_shape_and_moves_its_channels_last() {
        // K=2, C=3, R=S=2: element (k, c, r, s) = 1000k + 100c + 10r + s.
        let kernel = Tensor::from_shape(
            &[2, 3, 2, 2],
            &(0..24)
                .map(|i| {
                    let (k, c, r, s) = (i / 12, (i / 4) % 3, (i / 2) % 2, i % 2);
                    (1000 * k + 100 * c + 10 * r + s) as f32
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let moved = krsc(&kernel).unwrap();
        assert_eq!(moved.shape(), &[2, 3, 2, 2]);
        let view = moved.to_plain_array_view::<f32>().unwrap();
        let bytes = view.as_slice().unwrap();
        // KRSC order: (k, r, s, c) at ((k*2 + r)*2 + s)*3 + c.
        for (k, r, s, c) in itertools_product() {
            let at = ((k * 2 + r) * 2 + s) * 3 + c;
            assert_eq!(bytes[at], (1000 * k + 100 * c + 10 * r + s) as f32);
        }
    }

    fn itertools_product() -> Vec<(usize, usize, usize, usize)> {
        let mut all = vec![];
        for k in 0..2 {
            for r in 0..2 {
                for s in 0..2 {
                    for c in 0..3 {
                        all.push((k, r, s, c));
                    }
                }
            }
        }
        all
    }
}
