//! Tiny ONNX models built in Rust from the proto types, carrying defectkit's metadata exactly
//! as `defectkit export` writes it: test support for the deployment side, whose tests then
//! run ONNX Runtime, the pipeline, `embed` and the store without compiling Burn. Compiled
//! normally (it is small) so every crate's tests can use it.
//!
//! The graphs are simple enough to compute by hand ([`TinyModel::forward`]):
//! `input [batch, 3, s, s]` → ReduceMean over H, W → `m [batch, 3]`;
//! `embedding = m · W` (`W [3, d]`); a classifier adds `logits = embedding · H`
//! (`H [d, n]`), an autoencoder `reconstruction = 0.5 · input`.

use protobuf::{EnumOrUnknown, MessageField};

use super::{
    set_metadata_prop, tensor_proto, tensor_shape_proto, type_proto, GraphProto, ModelKind,
    ModelMetadata, ModelProto, NodeProto, OperatorSetIdProto, Precision, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, METADATA_KEY,
};
use crate::data::PreprocessSpec;

/// The opset the tiny models declare (burn-onnx exports 18 too).
pub const OPSET: i64 = 18;

/// A tiny model, its metadata and the weights to compute its outputs by hand.
#[derive(Debug, Clone)]
pub struct TinyModel {
    /// The ONNX model (write it with [`super::write_model`]).
    pub model: ModelProto,
    /// The metadata inside it.
    pub metadata: ModelMetadata,
    /// `W [3, d]`, row-major.
    pub projection: Vec<f32>,
    /// `H [d, n]`, row-major (empty for an autoencoder).
    pub head: Vec<f32>,
}

impl TinyModel {
    /// A classifier-shaped model (A, B or the teacher): outputs `logits`, `embedding`.
    pub fn classifier(kind: ModelKind, side: usize, classes: &[&str], dim: usize) -> Self {
        assert!(!kind.is_autoencoder(), "use TinyModel::autoencoder");
        Self::build(kind, side, classes, dim)
    }

    /// An autoencoder-shaped model (C): outputs `reconstruction`, `embedding`.
    pub fn autoencoder(side: usize, classes: &[&str], dim: usize) -> Self {
        Self::build(ModelKind::UnetAe, side, classes, dim)
    }

    /// The outputs for `input` (`[batch, 3, s, s]` flat): (primary, embedding), flat.
    pub fn forward(&self, input: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let [c, h, w] = self.metadata.input_shape;
        let d = self.metadata.embedding_dim;
        let plane = h * w;
        let mut embedding = Vec::new();
        for image in input.chunks(c * plane) {
            let means: Vec<f32> = image
                .chunks(plane)
                .map(|p| p.iter().sum::<f32>() / plane as f32)
                .collect();
            for j in 0..d {
                embedding.push((0..c).map(|i| means[i] * self.projection[i * d + j]).sum());
            }
        }
        let primary = if self.metadata.kind.is_autoencoder() {
            input.iter().map(|v| 0.5 * v).collect()
        } else {
            let n = self.metadata.classes.len();
            embedding
                .chunks(d)
                .flat_map(|e| {
                    (0..n).map(move |k| (0..d).map(|j| e[j] * self.head[j * n + k]).sum())
                })
                .collect()
        };
        (primary, embedding)
    }

    fn build(kind: ModelKind, side: usize, classes: &[&str], dim: usize) -> Self {
        let n = classes.len();
        // Deterministic, distinct weights of both signs.
        let projection: Vec<f32> = (0..3 * dim)
            .map(|i| ((i * 7 + 3) % 11) as f32 / 5.0 - 1.0)
            .collect();
        let head: Vec<f32> = if kind.is_autoencoder() {
            Vec::new()
        } else {
            (0..dim * n)
                .map(|i| ((i * 5 + 1) % 13) as f32 / 6.0 - 1.0)
                .collect()
        };
        let primary = kind.primary_output();
        let mut initializer = vec![
            int64_tensor("axes", &[2, 3]),
            float_tensor("W", &[3, dim as i64], &projection),
        ];
        let mut node = vec![
            node("ReduceMean", &["input", "axes"], &["means"], Some(0)),
            node("MatMul", &["means", "W"], &["embedding"], None),
        ];
        let primary_dims: Vec<Dim> = if kind.is_autoencoder() {
            initializer.push(float_tensor("half", &[], &[0.5]));
            node.push(node_plain("Mul", &["input", "half"], &[primary]));
            vec![
                Dim::Batch,
                Dim::Fixed(3),
                Dim::Fixed(side as i64),
                Dim::Fixed(side as i64),
            ]
        } else {
            initializer.push(float_tensor("H", &[dim as i64, n as i64], &head));
            node.push(node_plain("MatMul", &["embedding", "H"], &[primary]));
            vec![Dim::Batch, Dim::Fixed(n as i64)]
        };
        let side_dim = Dim::Fixed(side as i64);
        let graph = GraphProto {
            name: format!("tiny_{}", kind.as_str()),
            node,
            initializer,
            input: vec![value(
                "input",
                &[Dim::Batch, Dim::Fixed(3), side_dim.clone(), side_dim],
            )],
            output: vec![
                value(primary, &primary_dims),
                value("embedding", &[Dim::Batch, Dim::Fixed(dim as i64)]),
            ],
            ..Default::default()
        };
        let metadata = ModelMetadata {
            kind,
            precision: Precision::Fp32,
            preprocess: PreprocessSpec::imagenet(side as u32),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            input_shape: [3, side, side],
            embedding_dim: dim,
            outputs: vec![primary.to_string(), "embedding".to_string()],
            run_id: "tiny".into(),
            config_hash: "0".repeat(64),
            defectkit_version: env!("CARGO_PKG_VERSION").into(),
            checkpoint: "none".into(),
            opset: OPSET,
        };
        let mut model = ModelProto {
            ir_version: 9,
            producer_name: "defectkit-testing".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
                ..Default::default()
            }],
            graph: MessageField::some(graph),
            ..Default::default()
        };
        set_metadata_prop(&mut model, METADATA_KEY, &metadata.to_json());
        Self {
            model,
            metadata,
            projection,
            head,
        }
    }
}

/// One axis of a value's shape.
#[derive(Debug, Clone)]
enum Dim {
    /// The symbolic `batch` axis.
    Batch,
    /// A static size.
    Fixed(i64),
}

fn value(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| {
            let mut out = tensor_shape_proto::Dimension::default();
            match d {
                Dim::Batch => out.set_dim_param("batch".into()),
                Dim::Fixed(v) => out.set_dim_value(*v),
            }
            out
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: tensor_proto::DataType::FLOAT as i32,
        shape: MessageField::some(TensorShapeProto {
            dim,
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

fn node_plain(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    node(op, inputs, outputs, None)
}

/// A node; `keepdims` adds that int attribute (ReduceMean).
fn node(op: &str, inputs: &[&str], outputs: &[&str], keepdims: Option<i64>) -> NodeProto {
    let attribute = keepdims
        .map(|k| super::AttributeProto {
            name: "keepdims".into(),
            i: k,
            type_: EnumOrUnknown::new(super::attribute_proto::AttributeType::INT),
            ..Default::default()
        })
        .into_iter()
        .collect();
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{}", outputs[0]),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: tensor_proto::DataType::FLOAT as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: tensor_proto::DataType::INT64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_models_round_trip_with_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        for tiny in [
            TinyModel::classifier(ModelKind::CnnScratch, 8, &["a", "b"], 4),
            TinyModel::autoencoder(8, &["a"], 5),
        ] {
            let path = dir
                .path()
                .join(format!("{}.onnx", tiny.metadata.kind.as_str()));
            crate::onnx::write_model(&path, &tiny.model).unwrap();
            let back = crate::onnx::read_model(&path).unwrap();
            let json = crate::onnx::metadata_prop(&back, METADATA_KEY).unwrap();
            assert_eq!(ModelMetadata::from_json(json).unwrap(), tiny.metadata);
            assert_eq!(crate::onnx::input_names(&back), ["input"]);
            assert_eq!(crate::onnx::output_names(&back), tiny.metadata.outputs);
        }
    }

    #[test]
    fn the_hand_computed_forward_is_the_graph_described() {
        let tiny = TinyModel::classifier(ModelKind::Teacher, 2, &["a", "b", "c"], 2);
        // One image whose channel means are 1, 2, 3.
        let input: Vec<f32> = [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|m| [m - 1.0, m + 1.0, *m, *m])
            .collect();
        let (logits, embedding) = tiny.forward(&input);
        let w = &tiny.projection;
        let e0 = w[0] + 2.0 * w[2] + 3.0 * w[4];
        let e1 = w[1] + 2.0 * w[3] + 3.0 * w[5];
        assert_eq!(embedding, [e0, e1]);
        let h = &tiny.head;
        assert_eq!(logits.len(), 3);
        assert!((logits[2] - (e0 * h[2] + e1 * h[5])).abs() < 1e-6);
    }
}
