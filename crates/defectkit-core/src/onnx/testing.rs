//! Tiny ONNX models built in Rust from the proto types, carrying defectkit's metadata exactly
//! as `defectkit export` writes it: test support for the deployment side, whose tests then
//! run ONNX Runtime, the pipeline, `embed` and the store without compiling Burn. Compiled
//! normally (it is small) so every crate's tests can use it.
//!
//! The graphs are simple enough to compute by hand ([`TinyModel::forward`]):
//! `input [batch, 3, s, s]` → ReduceMean over H, W → `m [batch, 3]`;
//! `embedding = m · W` (`W [3, d]`); a classifier adds `logits = embedding · H`
//! (`H [d, n]`), an autoencoder `reconstruction = 0.5 · input`.

use protobuf::MessageField;

use super::build::{attr_int, attr_ints, float_tensor, int64_tensor, named_node, node, value, Dim};
use super::{
    set_metadata_prop, GraphProto, ModelKind, ModelMetadata, ModelProto, NodeProto,
    OperatorSetIdProto, Precision, TensorProto, METADATA_KEY,
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

    /// Adds a third output `features` = AveragePool(input, stride × stride, stride), i.e.
    /// `[batch, 3, s/stride, s/stride]` of local colour means (so a local defect shows at
    /// its own place), with the metadata's [`crate::onnx::FeatureMapSpec`]: what the patch
    /// detectors' tests read.
    pub fn with_features(mut self, stride: usize) -> Self {
        let side = self.metadata.input_shape[1];
        assert!(
            stride > 0 && side % stride == 0,
            "stride must divide the side"
        );
        let cells = (side / stride) as i64;
        let graph = self.model.graph.as_mut().expect("graph");
        graph.node.push(node(
            "AveragePool",
            &["input"],
            &["features"],
            vec![
                attr_ints("kernel_shape", &[stride as i64, stride as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
            ],
        ));
        graph.output.push(value(
            "features",
            &[
                Dim::Batch,
                Dim::Fixed(3),
                Dim::Fixed(cells),
                Dim::Fixed(cells),
            ],
        ));
        self.metadata.outputs.push("features".into());
        self.metadata.features = Some(crate::onnx::FeatureMapSpec {
            channels: 3,
            height: cells as usize,
            width: cells as usize,
            stride,
            sources: vec![crate::onnx::FeatureSource {
                layer: "input".into(),
                channels: 3,
                resample: format!("avg_pool {stride}x{stride}"),
            }],
        });
        set_metadata_prop(&mut self.model, METADATA_KEY, &self.metadata.to_json());
        self
    }

    /// The `features` output for `input` (see [`TinyModel::with_features`]), flat.
    pub fn features(&self, input: &[f32]) -> Vec<f32> {
        let spec = self.metadata.features.as_ref().expect("with_features");
        let [c, h, w] = self.metadata.input_shape;
        let s = spec.stride;
        let mut out = Vec::new();
        for image in input.chunks(c * h * w) {
            for ch in 0..c {
                for i in 0..spec.height {
                    for j in 0..spec.width {
                        let mut sum = 0.0f32;
                        for y in i * s..(i + 1) * s {
                            for x in j * s..(j + 1) * s {
                                sum += image[ch * h * w + y * w + x];
                            }
                        }
                        out.push(sum / (s * s) as f32);
                    }
                }
            }
        }
        out
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
        let mut nodes = vec![
            node(
                "ReduceMean",
                &["input", "axes"],
                &["means"],
                vec![attr_int("keepdims", 0)],
            ),
            node("MatMul", &["means", "W"], &["embedding"], vec![]),
        ];
        let primary_dims: Vec<Dim> = if kind.is_autoencoder() {
            initializer.push(float_tensor("half", &[], &[0.5]));
            nodes.push(node("Mul", &["input", "half"], &[primary], vec![]));
            vec![
                Dim::Batch,
                Dim::Fixed(3),
                Dim::Fixed(side as i64),
                Dim::Fixed(side as i64),
            ]
        } else {
            initializer.push(float_tensor("H", &[dim as i64, n as i64], &head));
            nodes.push(node("MatMul", &["embedding", "H"], &[primary], vec![]));
            vec![Dim::Batch, Dim::Fixed(n as i64)]
        };
        let side_dim = Dim::Fixed(side as i64);
        let graph = GraphProto {
            name: format!("tiny_{}", kind.as_str()),
            node: nodes,
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
        let (model, metadata) = with_metadata(graph, kind, side, classes, dim, "tiny");
        Self {
            model,
            metadata,
            projection,
            head,
        }
    }
}

/// A small ResNet-shaped classifier laid out as `defectkit export` (burn-onnx) writes A, B
/// and the teacher: Conv → BatchNormalization → Relu, MaxPool, a residual block (Add + Relu),
/// GlobalAveragePool → Reshape (`embedding`, `[batch, width]`) → MatMul + Add of a bias
/// reshaped at run time (`logits`). Weights are seeded pseudo-random; the quantizer's tests
/// use it where a graph with real convolutions is needed.
pub fn conv_classifier(
    side: usize,
    classes: &[&str],
    width: usize,
    seed: u64,
) -> (ModelProto, ModelMetadata) {
    let mut rng = crate::rng::SplitMix64(seed);
    let mut next = move || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
    let w = width as i64;
    let n = classes.len() as i64;
    let mut initializer = Vec::new();
    let mut nodes = Vec::new();
    let conv = |name: &str,
                input: &str,
                output: &str,
                cin: i64,
                stride: i64,
                init: &mut Vec<TensorProto>,
                nodes: &mut Vec<NodeProto>,
                next: &mut dyn FnMut() -> f32| {
        let count = (w * cin * 9) as usize;
        let bound = (6.0 / (cin as f32 * 9.0)).sqrt();
        let weights: Vec<f32> = (0..count).map(|_| (next() * 2.0 - 1.0) * bound).collect();
        init.push(float_tensor(
            &format!("{name}.weight"),
            &[w, cin, 3, 3],
            &weights,
        ));
        let gamma: Vec<f32> = (0..w).map(|_| 0.5 + next()).collect();
        let beta: Vec<f32> = (0..w).map(|_| next() - 0.5).collect();
        let mean: Vec<f32> = (0..w).map(|_| (next() - 0.5) * 0.2).collect();
        let var: Vec<f32> = (0..w).map(|_| 0.5 + next()).collect();
        for (p, v) in [
            ("gamma", gamma),
            ("beta", beta),
            ("running_mean", mean),
            ("running_var", var),
        ] {
            init.push(float_tensor(&format!("{name}.bn.{p}"), &[w], &v));
        }
        let conv_out = format!("{output}_conv");
        nodes.push(named_node(
            &format!("{name}_conv"),
            "Conv",
            &[input, &format!("{name}.weight")],
            &[&conv_out],
            vec![
                attr_ints("strides", &[stride, stride]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", 1),
            ],
        ));
        let mut bn = named_node(
            &format!("{name}_bn"),
            "BatchNormalization",
            &[
                &conv_out,
                &format!("{name}.bn.gamma"),
                &format!("{name}.bn.beta"),
                &format!("{name}.bn.running_mean"),
                &format!("{name}.bn.running_var"),
            ],
            &[output],
            vec![],
        );
        bn.attribute.push(super::build::attr_float("epsilon", 1e-5));
        nodes.push(bn);
    };
    conv(
        "c1",
        "input",
        "b1",
        3,
        2,
        &mut initializer,
        &mut nodes,
        &mut next,
    );
    nodes.push(node("Relu", &["b1"], &["r1"], vec![]));
    nodes.push(node(
        "MaxPool",
        &["r1"],
        &["p1"],
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("strides", &[2, 2]),
        ],
    ));
    conv(
        "c2",
        "p1",
        "b2",
        w,
        1,
        &mut initializer,
        &mut nodes,
        &mut next,
    );
    nodes.push(node("Relu", &["b2"], &["r2"], vec![]));
    conv(
        "c3",
        "r2",
        "b3",
        w,
        1,
        &mut initializer,
        &mut nodes,
        &mut next,
    );
    nodes.push(node("Add", &["b3", "p1"], &["s3"], vec![]));
    nodes.push(node("Relu", &["s3"], &["r3"], vec![]));
    nodes.push(node("GlobalAveragePool", &["r3"], &["g"], vec![]));
    initializer.push(int64_tensor("embedding_shape", &[0, w]));
    nodes.push(node(
        "Reshape",
        &["g", "embedding_shape"],
        &["embedding"],
        vec![],
    ));
    let fc: Vec<f32> = (0..(w * n) as usize).map(|_| next() * 2.0 - 1.0).collect();
    let bias: Vec<f32> = (0..n as usize).map(|_| next() - 0.5).collect();
    initializer.push(float_tensor("fc.weight", &[w, n], &fc));
    initializer.push(float_tensor("fc.bias", &[n], &bias));
    initializer.push(int64_tensor("fc_bias_shape", &[1, n]));
    nodes.push(node(
        "MatMul",
        &["embedding", "fc.weight"],
        &["fc_out"],
        vec![],
    ));
    nodes.push(node(
        "Reshape",
        &["fc.bias", "fc_bias_shape"],
        &["fc_bias_row"],
        vec![],
    ));
    nodes.push(node("Add", &["fc_out", "fc_bias_row"], &["logits"], vec![]));
    let side_dim = Dim::Fixed(side as i64);
    let graph = GraphProto {
        name: "tiny_conv_classifier".into(),
        node: nodes,
        initializer,
        input: vec![value(
            "input",
            &[Dim::Batch, Dim::Fixed(3), side_dim.clone(), side_dim],
        )],
        output: vec![
            value("logits", &[Dim::Batch, Dim::Fixed(n)]),
            value("embedding", &[Dim::Batch, Dim::Fixed(w)]),
        ],
        ..Default::default()
    };
    with_metadata(
        graph,
        ModelKind::CnnScratch,
        side,
        classes,
        width,
        "tiny-conv",
    )
}

/// `graph` as an opset-[`OPSET`] model carrying defectkit's metadata as `defectkit export`
/// writes it (ImageNet preprocessing at `side`, outputs primary + `embedding`).
fn with_metadata(
    graph: GraphProto,
    kind: ModelKind,
    side: usize,
    classes: &[&str],
    dim: usize,
    run_id: &str,
) -> (ModelProto, ModelMetadata) {
    let metadata = ModelMetadata {
        kind,
        precision: Precision::Fp32,
        preprocess: PreprocessSpec::imagenet(side as u32),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        input_shape: [3, side, side],
        embedding_dim: dim,
        outputs: vec![kind.primary_output().to_string(), "embedding".to_string()],
        run_id: run_id.into(),
        config_hash: "0".repeat(64),
        defectkit_version: env!("CARGO_PKG_VERSION").into(),
        checkpoint: "none".into(),
        opset: OPSET,
        data_split: None,
        features: None,
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
    (model, metadata)
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
