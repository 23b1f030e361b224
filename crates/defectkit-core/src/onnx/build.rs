//! Small constructors for graph pieces (values, nodes, attributes, initializers), shared by
//! the graph edits ([`super::scoring`], the deployment side's quantizer) and the tiny test
//! models ([`super::testing`]).

use protobuf::{EnumOrUnknown, MessageField};

use super::{
    attribute_proto::AttributeType, tensor_proto, tensor_shape_proto, type_proto, AttributeProto,
    NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// One axis of a value's shape.
#[derive(Debug, Clone)]
pub enum Dim {
    /// The symbolic `batch` axis.
    Batch,
    /// A static size.
    Fixed(i64),
}

impl Dim {
    fn to_proto(&self) -> tensor_shape_proto::Dimension {
        let mut out = tensor_shape_proto::Dimension::default();
        match self {
            Dim::Batch => out.set_dim_param("batch".into()),
            Dim::Fixed(v) => out.set_dim_value(*v),
        }
        out
    }
}

/// A FLOAT tensor value of shape `dims`.
pub fn value(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dims: Vec<_> = dims.iter().map(Dim::to_proto).collect();
    typed_value(name, tensor_proto::DataType::FLOAT, dims)
}

/// A tensor value of element type `elem` whose axes are the given proto dimensions.
pub fn typed_value(
    name: &str,
    elem: tensor_proto::DataType,
    dims: Vec<tensor_shape_proto::Dimension>,
) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: elem as i32,
        shape: MessageField::some(TensorShapeProto {
            dim: dims,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut ty = TypeProto::default();
    ty.set_tensor_type(tensor);
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(ty),
        ..Default::default()
    }
}

/// A node named `name` (or `<op>_<first output>` when `name` is empty).
pub fn named_node(
    name: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: if name.is_empty() {
            format!("{op}_{}", outputs[0])
        } else {
            name.into()
        },
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

/// A node named `<op>_<first output>`.
pub fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    named_node("", op, inputs, outputs, attribute)
}

/// An INT attribute.
pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        type_: EnumOrUnknown::new(AttributeType::INT),
        ..Default::default()
    }
}

/// An INTS attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        type_: EnumOrUnknown::new(AttributeType::INTS),
        ..Default::default()
    }
}

/// A FLOAT initializer (raw little-endian data).
pub fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<i64>() as usize, values.len());
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: tensor_proto::DataType::FLOAT as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A 1-D INT64 initializer (raw little-endian data).
pub fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: tensor_proto::DataType::INT64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An initializer of element type `elem` with the given little-endian `raw` bytes.
pub fn raw_tensor(
    name: &str,
    dims: &[i64],
    elem: tensor_proto::DataType,
    raw: Vec<u8>,
) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// A STRING attribute.
pub fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: s.as_bytes().to_vec(),
        type_: EnumOrUnknown::new(AttributeType::STRING),
        ..Default::default()
    }
}

/// A FLOAT attribute.
pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        type_: EnumOrUnknown::new(AttributeType::FLOAT),
        ..Default::default()
    }
}
