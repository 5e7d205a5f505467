//! Reading and writing the pieces of an ONNX graph that the rewrites of
//! this module share: constants by name, integer values, new nodes.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType as OnnxType, AttributeProto, GraphProto,
    NodeProto, TensorProto,
};

/// The constant tensor called `name` in `graph` (an initializer or a
/// `Constant` node's `value`), if it is one.
pub(crate) fn constant<'a>(graph: &'a GraphProto, name: &str) -> Option<&'a TensorProto> {
    let from_init = graph.initializer.iter().find(|t| t.name == name);
    from_init.or_else(|| {
        (graph.node.iter())
            .find(|n| n.op_type == "Constant" && n.output.first().is_some_and(|o| o == name))
            .and_then(|n| n.attribute.iter().find(|a| a.name == "value"))
            .and_then(|a| a.t.as_ref())
    })
}

/// The values of an INT64 or INT32 tensor, as stored (typed fields or raw
/// little-endian bytes); `None` for another type.
pub(crate) fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    let raw = |width: usize, read: fn(&[u8]) -> i64| -> Vec<i64> {
        t.raw_data.chunks_exact(width).map(read).collect()
    };
    match t.data_type {
        x if x == OnnxType::Int64 as i32 => Some(match t.int64_data.is_empty() {
            true => raw(8, |b| i64::from_le_bytes(b.try_into().unwrap_or_default())),
            false => t.int64_data.clone(),
        }),
        x if x == OnnxType::Int32 as i32 => Some(match t.int32_data.is_empty() {
            true => raw(4, |b| {
                i32::from_le_bytes(b.try_into().unwrap_or_default()) as i64
            }),
            false => t.int32_data.iter().map(|&v| v as i64).collect(),
        }),
        _ => None,
    }
}

/// A 1-D INT64 tensor of `values`.
pub(crate) fn ints(values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: OnnxType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A tensor attribute.
pub(crate) fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..Default::default()
    }
}

/// A node named `name` whose one output is called `name` too.
pub(crate) fn node(
    name: &str,
    op: &str,
    inputs: Vec<String>,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs,
        output: vec![name.into()],
        attribute: attrs,
        ..Default::default()
    }
}

/// A typed value of fixed `dims` (a graph input or output), for the
/// rewrites' unit tests.
#[cfg(test)]
pub(crate) fn value(name: &str, t: OnnxType, dims: &[i64]) -> tract_onnx::pb::ValueInfoProto {
    use tract_onnx::pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
    use tract_onnx::pb::{type_proto, TensorShapeProto, TypeProto, ValueInfoProto};
    let dim = |d: i64| Dimension {
        value: Some(Dim::DimValue(d)),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: t as i32,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| dim(d)).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_from_typed_fields_and_raw_bytes() {
        let raw64 = TensorProto {
            data_type: OnnxType::Int64 as i32,
            raw_data: [-1i64, i64::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            ..Default::default()
        };
        assert_eq!(int_values(&raw64), Some(vec![-1, i64::MAX]));
        let raw32 = TensorProto {
            data_type: OnnxType::Int32 as i32,
            raw_data: [-3i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        assert_eq!(int_values(&raw32), Some(vec![-3, 7]));
        assert_eq!(int_values(&ints(&[4, 5])), Some(vec![4, 5]));
        let float = TensorProto {
            data_type: OnnxType::Float as i32,
            ..Default::default()
        };
        assert_eq!(int_values(&float), None);
        // A Constant node's value is found by its output's name.
        let graph = GraphProto {
            node: vec![node(
                "c",
                "Constant",
                vec![],
                vec![tensor_attr("value", ints(&[9]))],
            )],
            ..Default::default()
        };
        assert_eq!(constant(&graph, "c").and_then(int_values), Some(vec![9]));
        assert!(constant(&graph, "d").is_none());
    }
}
