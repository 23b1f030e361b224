//! An anomaly-scoring head appended to an exported graph (`model.scored.onnx`): the model
//! then outputs, besides its own outputs, each image's anomaly `score`, the `class_index` it
//! was scored against, that class's `threshold` and the verdict `anomalous`, so a deployment
//! needs ONNX Runtime and nothing else.
//!
//! [`append_scoring`] edits the graph; [`reference_scores`] computes the same scores directly
//! in Rust (f64 accumulation), the reference the graph is tested against.

use std::collections::HashSet;

use super::build::{attr_int, attr_ints, float_tensor, int64_tensor, named_node, typed_value};
use super::{
    metadata_prop, opset_version, set_metadata_prop, tensor_proto::DataType, tensor_shape_proto,
    value_dims, AttributeProto, GraphProto, ModelMetadata, ModelProto, NodeProto, OnnxError,
    TensorProto, ValueInfoProto, METADATA_KEY,
};

/// The `metadata_props` key holding the caller's detector description (JSON).
pub const DETECTOR_KEY: &str = "defectkit.detector";

/// The outputs [`append_scoring`] adds, in order.
pub const SCORE_OUTPUTS: [&str; 4] = ["score", "class_index", "threshold", "anomalous"];

/// Prefix of every node, value and initializer name the head adds.
const PREFIX: &str = "dk_score/";

/// The head uses opset-18 operator forms (reduction `axes` as an input).
const MIN_OPSET: i64 = 18;

/// How the bundle picks each image's class.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassRule {
    /// argmax of the model's `logits` output (classifiers A, B, teacher).
    Logits,
    /// argmin of the per-class scores (embedding heads only).
    LowestScore,
    /// argmin of the Euclidean distance from `embedding` to these per-class means (any head;
    /// what the reconstruction head uses for the autoencoder). Each inner Vec has length d.
    NearestMean(Vec<Vec<f32>>),
}

/// The anomaly score appended to the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoringHead {
    /// Mahalanobis/Euclidean: score_c(z) = ‖W_c (z − μ_c)‖₂ for each class c.
    /// `transforms: None` = identity (Euclidean); `Some(w)` has one row-major d×d matrix per
    /// class (W_c = L_c⁻¹, the inverse Cholesky factor, so that the score is the Mahalanobis
    /// distance).
    Whitened {
        /// Per-class means μ_c, each of length d.
        means: Vec<Vec<f32>>,
        /// Per-class row-major d×d whitening matrices W_c; `None` = identity.
        transforms: Option<Vec<Vec<f32>>>,
    },
    /// k-NN: score_c(z) = mean of the k smallest Euclidean distances from z to the class's
    /// reference embeddings (row-major N_c×d each; N_c ≥ k; classes may differ in N_c).
    Knn {
        /// How many nearest references are averaged.
        k: usize,
        /// Per-class reference embeddings, row-major N_c×d.
        references: Vec<Vec<f32>>,
    },
    /// Reconstruction error (autoencoder only): e(x,y) per pixel = mean over channels of
    /// (input − reconstruction)²; `pool: None` → score = mean over pixels (= mean squared
    /// error over all values); `Some(k)` → score = max over the image of the k×k
    /// average-pooled e (stride 1, no padding).
    Recon {
        /// The pooling window side, or `None` for the plain mean.
        pool: Option<usize>,
    },
}

/// Everything [`append_scoring`] needs: the head, the class rule and the thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringSpec {
    /// The anomaly score.
    pub head: ScoringHead,
    /// How each image's class is picked.
    pub class_rule: ClassRule,
    /// Per-class thresholds (len = n_classes); anomalous ⇔ `score ≥ thresholds[class_index]`.
    pub thresholds: Vec<f32>,
    /// JSON stored under the metadata key [`DETECTOR_KEY`] (the caller's detector
    /// description).
    pub detector_json: String,
}

/// Appends the head: new graph outputs `score` f32 `[batch]`, `class_index` int64 `[batch]`,
/// `threshold` f32 `[batch]` (= `thresholds[class_index]`) and `anomalous` bool `[batch]`
/// (score ≥ threshold), after the existing outputs (which stay). Sets the metadata prop
/// [`DETECTOR_KEY`] and appends the four names to the [`METADATA_KEY`] JSON's `outputs`.
///
/// Everything is validated first (opset, metadata, d, class counts, k ≤ N_c, pool ≤ H, W,
/// rule/head compatibility, name collisions); on an error the model is left unchanged.
pub fn append_scoring(model: &mut ModelProto, spec: &ScoringSpec) -> Result<(), OnnxError> {
    let shapes = check(model, spec)?;
    let mut b = Builder::default();
    emit(&mut b, spec, &shapes);

    let mut metadata = shapes.metadata;
    metadata
        .outputs
        .extend(SCORE_OUTPUTS.iter().map(|s| s.to_string()));
    let graph = model.graph.as_mut().expect("checked");
    graph.node.extend(b.nodes);
    graph.initializer.extend(b.inits);
    for (name, elem) in SCORE_OUTPUTS.iter().zip([
        DataType::FLOAT,
        DataType::INT64,
        DataType::FLOAT,
        DataType::BOOL,
    ]) {
        graph
            .output
            .push(typed_value(name, elem, vec![shapes.batch.clone()]));
    }
    set_metadata_prop(model, METADATA_KEY, &metadata.to_json());
    set_metadata_prop(model, DETECTOR_KEY, &spec.detector_json);
    Ok(())
}

/// The same scores computed directly in Rust (f64 accumulation) for a batch: (score,
/// class_index) per image. `primary` is the `logits` or `reconstruction` output flat,
/// `embedding` flat `[batch, d]`, `input` flat `[batch, 3, H, W]`, `hw` = (H, W). Slices a rule
/// or head does not read may be empty. Ties pick the lowest class index, as ONNX's
/// ArgMax/ArgMin do.
///
/// # Panics
/// When the slices' lengths do not fit the spec (this is a reference, not a validator:
/// [`append_scoring`] validates specs).
pub fn reference_scores(
    spec: &ScoringSpec,
    input: &[f32],
    primary: &[f32],
    embedding: &[f32],
    hw: (usize, usize),
) -> Vec<(f64, usize)> {
    let n = spec.thresholds.len();
    let batch = reference_batch(spec, input, primary, embedding, hw);
    let d = if batch == 0 || embedding.is_empty() {
        0
    } else {
        assert_eq!(embedding.len() % batch, 0, "embedding is not [batch, d]");
        embedding.len() / batch
    };
    (0..batch)
        .map(|i| {
            let z = &embedding[i * d..(i + 1) * d];
            let per_class: Option<Vec<f64>> = match &spec.head {
                ScoringHead::Whitened { means, transforms } => Some(
                    means
                        .iter()
                        .enumerate()
                        .map(|(c, mu)| {
                            let diff: Vec<f64> = z
                                .iter()
                                .zip(mu)
                                .map(|(a, m)| *a as f64 - *m as f64)
                                .collect();
                            let sq: f64 = match transforms {
                                None => diff.iter().map(|v| v * v).sum(),
                                Some(w) => (0..d)
                                    .map(|r| {
                                        let row = &w[c][r * d..(r + 1) * d];
                                        let v: f64 =
                                            row.iter().zip(&diff).map(|(a, b)| *a as f64 * b).sum();
                                        v * v
                                    })
                                    .sum(),
                            };
                            sq.sqrt()
                        })
                        .collect(),
                ),
                ScoringHead::Knn { k, references } => Some(
                    references
                        .iter()
                        .map(|refs| {
                            let mut dist: Vec<f64> =
                                refs.chunks(d).map(|r| distance(z, r)).collect();
                            dist.sort_by(f64::total_cmp);
                            assert!(dist.len() >= *k, "k-NN: fewer references than k");
                            dist[..*k].iter().sum::<f64>() / *k as f64
                        })
                        .collect(),
                ),
                ScoringHead::Recon { .. } => None,
            };
            let class = match &spec.class_rule {
                ClassRule::Logits => {
                    let row: Vec<f64> = primary[i * n..(i + 1) * n]
                        .iter()
                        .map(|v| -(*v as f64))
                        .collect();
                    argmin(&row)
                }
                ClassRule::LowestScore => argmin(
                    per_class
                        .as_ref()
                        .expect("LowestScore needs an embedding head"),
                ),
                ClassRule::NearestMean(means) => {
                    let dist: Vec<f64> = means.iter().map(|m| distance(z, m)).collect();
                    argmin(&dist)
                }
            };
            let score = match (&per_class, &spec.head) {
                (Some(s), _) => s[class],
                (None, ScoringHead::Recon { pool }) => {
                    let plane = hw.0 * hw.1;
                    let size = 3 * plane;
                    recon_score(
                        &input[i * size..(i + 1) * size],
                        &primary[i * size..(i + 1) * size],
                        hw,
                        *pool,
                    )
                }
                (None, _) => unreachable!("embedding heads give per-class scores"),
            };
            (score, class)
        })
        .collect()
}

/// Euclidean distance in f64.
fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let v = *x as f64 - *y as f64;
            v * v
        })
        .sum::<f64>()
        .sqrt()
}

/// Index of the first smallest value.
fn argmin(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v < values[best] {
            best = i;
        }
    }
    best
}

/// One image's reconstruction score (`x`, `y` flat [3, H, W]).
fn recon_score(x: &[f32], y: &[f32], (h, w): (usize, usize), pool: Option<usize>) -> f64 {
    let plane = h * w;
    let channels = x.len() / plane;
    let e: Vec<f64> = (0..plane)
        .map(|p| {
            (0..channels)
                .map(|c| {
                    let v = x[c * plane + p] as f64 - y[c * plane + p] as f64;
                    v * v
                })
                .sum::<f64>()
                / channels as f64
        })
        .collect();
    match pool {
        None => e.iter().sum::<f64>() / plane as f64,
        Some(k) => {
            let mut best = f64::NEG_INFINITY;
            for top in 0..=h - k {
                for left in 0..=w - k {
                    let mut sum = 0.0;
                    for r in top..top + k {
                        sum += e[r * w + left..r * w + left + k].iter().sum::<f64>();
                    }
                    best = best.max(sum / (k * k) as f64);
                }
            }
            best
        }
    }
}

/// The batch size of a reference call, from whichever slice tells it.
fn reference_batch(
    spec: &ScoringSpec,
    input: &[f32],
    primary: &[f32],
    embedding: &[f32],
    (h, w): (usize, usize),
) -> usize {
    let image = 3 * h * w;
    if !input.is_empty() && image > 0 {
        assert_eq!(input.len() % image, 0, "input is not [batch, 3, H, W]");
        return input.len() / image;
    }
    let d = match (&spec.head, &spec.class_rule) {
        (ScoringHead::Whitened { means, .. }, _) => means.first().map(Vec::len),
        (_, ClassRule::NearestMean(means)) => means.first().map(Vec::len),
        _ => None,
    };
    if let Some(d) = d.filter(|d| *d > 0) {
        assert_eq!(embedding.len() % d, 0, "embedding is not [batch, d]");
        return embedding.len() / d;
    }
    let n = spec.thresholds.len();
    assert!(
        matches!(spec.class_rule, ClassRule::Logits) && n > 0,
        "reference_scores: pass `input` (the batch size cannot be told otherwise)"
    );
    assert_eq!(primary.len() % n, 0, "logits are not [batch, n_classes]");
    primary.len() / n
}

/// What validation learnt about the graph.
struct Shapes {
    metadata: ModelMetadata,
    classes: usize,
    /// The embedding length (when the spec reads `embedding`).
    dim: usize,
    /// The axis 0 of the new outputs (copied from an existing output).
    batch: tensor_shape_proto::Dimension,
}

fn edit(msg: String) -> OnnxError {
    OnnxError::Edit(format!("scoring head: {msg}"))
}

fn find<'g>(values: &'g [ValueInfoProto], name: &str) -> Option<&'g ValueInfoProto> {
    values.iter().find(|v| v.name == name)
}

/// Every name the graph uses (values, initializers, nodes).
fn graph_names(graph: &GraphProto) -> HashSet<&str> {
    let mut names = HashSet::new();
    for v in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        names.insert(v.name.as_str());
    }
    for t in &graph.initializer {
        names.insert(t.name.as_str());
    }
    for n in &graph.node {
        names.insert(n.name.as_str());
        names.extend(n.input.iter().map(String::as_str));
        names.extend(n.output.iter().map(String::as_str));
    }
    names
}

fn check_finite(what: &str, values: &[f32]) -> Result<(), OnnxError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(edit(format!("{what} has a non-finite value at {i}"))),
    }
}

/// A static axis of a value (`None` when symbolic, unknown or absent).
fn static_dim(value: &ValueInfoProto, axis: usize) -> Option<usize> {
    value_dims(value)
        .get(axis)
        .copied()
        .flatten()
        .map(|v| v as usize)
}

fn check_means(
    what: &str,
    means: &[Vec<f32>],
    classes: usize,
    dim: usize,
) -> Result<(), OnnxError> {
    if means.len() != classes {
        return Err(edit(format!(
            "{what} has {} classes, the model {classes}",
            means.len()
        )));
    }
    for (c, m) in means.iter().enumerate() {
        if m.len() != dim {
            return Err(edit(format!(
                "{what}[{c}] has length {}, the embedding d = {dim}",
                m.len()
            )));
        }
        check_finite(&format!("{what}[{c}]"), m)?;
    }
    Ok(())
}

/// Validates `spec` against `model`; nothing is changed.
fn check(model: &ModelProto, spec: &ScoringSpec) -> Result<Shapes, OnnxError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| edit("model has no graph".into()))?;
    match opset_version(model) {
        Some(v) if v >= MIN_OPSET => {}
        other => {
            return Err(edit(format!(
                "needs default-domain opset ≥ {MIN_OPSET}, the model has {other:?}"
            )))
        }
    }
    let json = metadata_prop(model, METADATA_KEY)
        .ok_or_else(|| edit(format!("model has no {METADATA_KEY:?} metadata")))?;
    let metadata = ModelMetadata::from_json(json)
        .map_err(|e| edit(format!("the {METADATA_KEY:?} metadata is invalid: {e}")))?;
    let classes = metadata.classes.len();
    if classes == 0 {
        return Err(edit("the model's metadata lists no classes".into()));
    }
    if spec.thresholds.len() != classes {
        return Err(edit(format!(
            "{} thresholds for {classes} classes",
            spec.thresholds.len()
        )));
    }
    if let Some(i) = spec.thresholds.iter().position(|t| t.is_nan()) {
        return Err(edit(format!("threshold {i} is NaN")));
    }
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&spec.detector_json) {
        return Err(edit(format!("detector_json is not JSON: {e}")));
    }

    let names = graph_names(graph);
    if let Some(taken) = SCORE_OUTPUTS.iter().find(|n| names.contains(*n)) {
        return Err(edit(format!(
            "the graph already has a value {taken:?} (already scored?)"
        )));
    }
    if let Some(taken) = names.iter().find(|n| n.starts_with(PREFIX)) {
        return Err(edit(format!(
            "the graph already uses the name {taken:?} (prefix {PREFIX:?} is reserved)"
        )));
    }

    let recon = matches!(spec.head, ScoringHead::Recon { .. });
    let output = |name: &str, why: &str| {
        find(&graph.output, name).ok_or_else(|| {
            edit(format!(
                "{why} needs a {name:?} output; the model ({}) has {:?}",
                metadata.kind.as_str(),
                graph.output.iter().map(|v| &v.name).collect::<Vec<_>>()
            ))
        })
    };

    // The class rule against the graph.
    match &spec.class_rule {
        ClassRule::Logits => {
            let logits = output("logits", "class rule Logits")?;
            if let Some(n) = static_dim(logits, 1) {
                if n != classes {
                    return Err(edit(format!(
                        "`logits` has {n} columns, the metadata {classes} classes"
                    )));
                }
            }
        }
        ClassRule::LowestScore if recon => {
            return Err(edit(
                "class rule LowestScore needs per-class scores; the Recon head has one \
                 score per image (use Logits or NearestMean)"
                    .into(),
            ))
        }
        _ => {}
    }

    // The embedding length, when the spec reads `embedding`.
    let reads_embedding = !recon || matches!(spec.class_rule, ClassRule::NearestMean(_));
    let mut dim = 0;
    if reads_embedding {
        let why = if recon {
            "class rule NearestMean"
        } else {
            "an embedding head"
        };
        let embedding = output("embedding", why)?;
        dim = match static_dim(embedding, 1) {
            Some(d) if d != metadata.embedding_dim => {
                return Err(edit(format!(
                    "`embedding` has d = {d}, the metadata says {}",
                    metadata.embedding_dim
                )))
            }
            Some(d) => d,
            None => metadata.embedding_dim,
        };
        if dim == 0 {
            return Err(edit("the embedding dimension is 0".into()));
        }
    }
    if let ClassRule::NearestMean(means) = &spec.class_rule {
        check_means("NearestMean means", means, classes, dim)?;
    }

    // The head.
    match &spec.head {
        ScoringHead::Whitened { means, transforms } => {
            check_means("Whitened means", means, classes, dim)?;
            if let Some(w) = transforms {
                if w.len() != classes {
                    return Err(edit(format!(
                        "Whitened transforms has {} matrices for {classes} classes",
                        w.len()
                    )));
                }
                for (c, m) in w.iter().enumerate() {
                    if m.len() != dim * dim {
                        return Err(edit(format!(
                            "Whitened transforms[{c}] has {} values, not d×d = {}",
                            m.len(),
                            dim * dim
                        )));
                    }
                    check_finite(&format!("Whitened transforms[{c}]"), m)?;
                }
            }
        }
        ScoringHead::Knn { k, references } => {
            if *k == 0 {
                return Err(edit("Knn k must be at least 1".into()));
            }
            if references.len() != classes {
                return Err(edit(format!(
                    "Knn references has {} classes, the model {classes}",
                    references.len()
                )));
            }
            for (c, r) in references.iter().enumerate() {
                if r.len() % dim != 0 {
                    return Err(edit(format!(
                        "Knn references[{c}] has {} values, not a multiple of d = {dim}",
                        r.len()
                    )));
                }
                let n = r.len() / dim;
                if n < *k {
                    return Err(edit(format!(
                        "Knn references[{c}] has N = {n} embeddings, fewer than k = {k}"
                    )));
                }
                check_finite(&format!("Knn references[{c}]"), r)?;
            }
        }
        ScoringHead::Recon { pool } => {
            if !metadata.kind.is_autoencoder() {
                return Err(edit(format!(
                    "the Recon head needs an autoencoder; the model is {}",
                    metadata.kind.as_str()
                )));
            }
            let reconstruction = output("reconstruction", "the Recon head")?;
            let input = find(&graph.input, "input")
                .ok_or_else(|| edit("the Recon head needs a graph input \"input\"".into()))?;
            let (x, y) = (value_dims(input), value_dims(reconstruction));
            if x.len() != 4 || y.len() != 4 {
                return Err(edit(format!(
                    "`input` and `reconstruction` must be [batch, C, H, W]; they have {} and \
                     {} axes",
                    x.len(),
                    y.len()
                )));
            }
            if let Some(axis) =
                (1..4).find(|&a| matches!((x[a], y[a]), (Some(p), Some(q)) if p != q))
            {
                return Err(edit(format!(
                    "`input` and `reconstruction` differ on axis {axis}: {:?} vs {:?}",
                    x[axis], y[axis]
                )));
            }
            let [_, mh, mw] = metadata.input_shape;
            let h = static_dim(input, 2).unwrap_or(mh);
            let w = static_dim(input, 3).unwrap_or(mw);
            if let Some(k) = pool {
                if *k == 0 || *k > h || *k > w {
                    return Err(edit(format!(
                        "Recon pool {k} must be in 1..=min(H, W) (the input is {h}×{w})"
                    )));
                }
            }
        }
    }

    // Axis 0 of the new outputs: that of an existing per-image output.
    let batch = ["embedding", "logits", "reconstruction"]
        .iter()
        .filter_map(|n| find(&graph.output, n))
        .chain(graph.output.iter())
        .find_map(|v| {
            v.type_
                .as_ref()
                .filter(|t| t.has_tensor_type())
                .and_then(|t| t.tensor_type().shape.as_ref())
                .and_then(|s| s.dim.first())
                .filter(|d| d.has_dim_param() || d.has_dim_value())
                .cloned()
        })
        .unwrap_or_else(|| {
            let mut d = tensor_shape_proto::Dimension::default();
            d.set_dim_param("batch".into());
            d
        });

    Ok(Shapes {
        metadata,
        classes,
        dim,
        batch,
    })
}

/// The nodes and initializers being added, all named `dk_score/…`.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Builder {
    /// A FLOAT initializer `dk_score/<tag>`.
    fn f32s(&mut self, tag: &str, dims: &[i64], values: &[f32]) -> String {
        let name = format!("{PREFIX}{tag}");
        self.inits.push(float_tensor(&name, dims, values));
        name
    }

    /// A 1-D INT64 initializer `dk_score/<tag>`, shared when asked for twice.
    fn i64s(&mut self, tag: &str, values: &[i64]) -> String {
        let name = format!("{PREFIX}{tag}");
        if !self.inits.iter().any(|t| t.name == name) {
            self.inits.push(int64_tensor(&name, values));
        }
        name
    }

    /// Reduction axes as an opset-18 `axes` input.
    fn axes(&mut self, axes: &[i64]) -> String {
        let tag = format!(
            "axes_{}",
            axes.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join("_")
        );
        self.i64s(&tag, axes)
    }

    /// A node with one output `dk_score/<tag>` (node name the same).
    fn op(&mut self, op: &str, inputs: &[&str], tag: &str, attrs: Vec<AttributeProto>) -> String {
        let name = format!("{PREFIX}{tag}");
        self.nodes
            .push(named_node(&name, op, inputs, &[&name], attrs));
        name
    }

    /// A node producing the graph output `out` (node name `dk_score/<out>`).
    fn op_to(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>) {
        let name = format!("{PREFIX}{out}");
        self.nodes
            .push(named_node(&name, op, inputs, &[out], attrs));
    }

    /// `embedding` as [B, 1, d], built once.
    fn z3(&mut self) -> String {
        let name = format!("{PREFIX}z3");
        if !self.nodes.iter().any(|n| n.name == name) {
            let axes = self.axes(&[1]);
            self.op("Unsqueeze", &["embedding", &axes], "z3", vec![]);
        }
        name
    }

    /// Squared Euclidean distances [B, C] from `embedding` to stacked `means` [C, d].
    fn squared_distances(&mut self, tag: &str, means: &[Vec<f32>], d: usize) -> String {
        let flat: Vec<f32> = means.concat();
        let m = self.f32s(
            &format!("{tag}/means"),
            &[means.len() as i64, d as i64],
            &flat,
        );
        let z3 = self.z3();
        let diff = self.op("Sub", &[&z3, &m], &format!("{tag}/diff"), vec![]);
        let axes = self.axes(&[2]);
        self.op(
            "ReduceSumSquare",
            &[&diff, &axes],
            &format!("{tag}/squared"),
            vec![attr_int("keepdims", 0)],
        )
    }
}

/// Emits the head's nodes (validated `spec`).
fn emit(b: &mut Builder, spec: &ScoringSpec, shapes: &Shapes) {
    let (c, d) = (shapes.classes, shapes.dim);
    // Per-class scores [B, C] for the embedding heads.
    let per_class: Option<String> = match &spec.head {
        ScoringHead::Whitened {
            means,
            transforms: None,
        } => {
            let sq = b.squared_distances("whitened", means, d);
            Some(b.op("Sqrt", &[&sq], "per_class", vec![]))
        }
        ScoringHead::Whitened {
            means,
            transforms: Some(w),
        } => {
            let flat: Vec<f32> = means.concat();
            let m = b.f32s("whitened/means", &[c as i64, d as i64], &flat);
            let z3 = b.z3();
            let diff = b.op("Sub", &[&z3, &m], "whitened/diff", vec![]); // [B, C, d]
            let cbd = b.op(
                "Transpose",
                &[&diff],
                "whitened/diff_cbd",
                vec![attr_ints("perm", &[1, 0, 2])],
            ); // [C, B, d]
               // Row vectors times W_cᵀ: (W_c v)ᵀ = vᵀ W_cᵀ.
            let wt: Vec<f32> = w
                .iter()
                .flat_map(|m| (0..d).flat_map(move |j| (0..d).map(move |i| m[i * d + j])))
                .collect();
            let wt = b.f32s(
                "whitened/transforms_t",
                &[c as i64, d as i64, d as i64],
                &wt,
            );
            let white = b.op("MatMul", &[&cbd, &wt], "whitened/white", vec![]); // [C, B, d]
            let axes = b.axes(&[2]);
            let sq = b.op(
                "ReduceSumSquare",
                &[&white, &axes],
                "whitened/squared_cb",
                vec![attr_int("keepdims", 0)],
            ); // [C, B]
            let sq = b.op(
                "Transpose",
                &[&sq],
                "whitened/squared",
                vec![attr_ints("perm", &[1, 0])],
            ); // [B, C]
            Some(b.op("Sqrt", &[&sq], "per_class", vec![]))
        }
        ScoringHead::Knn { k, references } => {
            let z3 = b.z3();
            let kk = b.i64s("knn/k", &[*k as i64]);
            let axes2 = b.axes(&[2]);
            let axes1 = b.axes(&[1]);
            let mut per = Vec::new();
            for (ci, r) in references.iter().enumerate() {
                let n = (r.len() / d) as i64;
                let t = format!("knn/{ci}");
                let refs = b.f32s(&format!("{t}/references"), &[1, n, d as i64], r);
                let diff = b.op("Sub", &[&z3, &refs], &format!("{t}/diff"), vec![]); // [B, N, d]
                let sq = b.op(
                    "ReduceSumSquare",
                    &[&diff, &axes2],
                    &format!("{t}/squared"),
                    vec![attr_int("keepdims", 0)],
                ); // [B, N]
                let (values, indices) = (
                    format!("{PREFIX}{t}/nearest"),
                    format!("{PREFIX}{t}/nearest_at"),
                );
                b.nodes.push(named_node(
                    &values,
                    "TopK",
                    &[&sq, &kk],
                    &[&values, &indices],
                    vec![
                        attr_int("axis", 1),
                        attr_int("largest", 0),
                        attr_int("sorted", 1),
                    ],
                )); // [B, k]
                let dist = b.op("Sqrt", &[&values], &format!("{t}/distances"), vec![]);
                per.push(b.op(
                    "ReduceMean",
                    &[&dist, &axes1],
                    &format!("{t}/score"),
                    vec![attr_int("keepdims", 1)],
                )); // [B, 1]
            }
            let per: Vec<&str> = per.iter().map(String::as_str).collect();
            Some(b.op("Concat", &per, "per_class", vec![attr_int("axis", 1)]))
        }
        ScoringHead::Recon { .. } => None,
    };

    // class_index [B].
    let pick = vec![attr_int("axis", 1), attr_int("keepdims", 0)];
    match &spec.class_rule {
        ClassRule::Logits => b.op_to("ArgMax", &["logits"], "class_index", pick),
        ClassRule::LowestScore => {
            let per = per_class.as_deref().expect("validated: embedding head");
            b.op_to("ArgMin", &[per], "class_index", pick)
        }
        ClassRule::NearestMean(means) => {
            let sq = b.squared_distances("nearest", means, d);
            b.op_to("ArgMin", &[&sq], "class_index", pick)
        }
    }

    // score [B].
    let axes123 = [1, 2, 3];
    match (&spec.head, &per_class) {
        (_, Some(per)) => {
            let axes1 = b.axes(&[1]);
            let at = b.op(
                "Unsqueeze",
                &["class_index", &axes1],
                "class_index_b1",
                vec![],
            );
            let g = b.op(
                "GatherElements",
                &[per, &at],
                "score_b1",
                vec![attr_int("axis", 1)],
            ); // [B, 1]
            b.op_to("Squeeze", &[&g, &axes1], "score", vec![]);
        }
        (ScoringHead::Recon { pool }, None) => {
            let diff = b.op("Sub", &["input", "reconstruction"], "recon/diff", vec![]);
            let sq = b.op("Mul", &[&diff, &diff], "recon/squared", vec![]);
            let axes1 = b.axes(&[1]);
            let e = b.op(
                "ReduceMean",
                &[&sq, &axes1],
                "recon/error",
                vec![attr_int("keepdims", 1)],
            ); // [B, 1, H, W]
            let axes = b.axes(&axes123);
            match pool {
                None => b.op_to(
                    "ReduceMean",
                    &[&e, &axes],
                    "score",
                    vec![attr_int("keepdims", 0)],
                ),
                Some(k) => {
                    let k = *k as i64;
                    let pooled = b.op(
                        "AveragePool",
                        &[&e],
                        "recon/pooled",
                        vec![
                            attr_ints("kernel_shape", &[k, k]),
                            attr_ints("strides", &[1, 1]),
                        ],
                    );
                    b.op_to(
                        "ReduceMax",
                        &[&pooled, &axes],
                        "score",
                        vec![attr_int("keepdims", 0)],
                    )
                }
            }
        }
        (_, None) => unreachable!("embedding heads give per-class scores"),
    }

    // threshold [B], anomalous [B].
    let th = b.f32s("thresholds", &[c as i64], &spec.thresholds);
    b.op_to(
        "Gather",
        &[&th, "class_index"],
        "threshold",
        vec![attr_int("axis", 0)],
    );
    b.op_to(
        "GreaterOrEqual",
        &["score", "threshold"],
        "anomalous",
        vec![],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::testing::TinyModel;
    use crate::onnx::{output_names, ModelKind};

    fn classifier() -> TinyModel {
        TinyModel::classifier(ModelKind::CnnScratch, 8, &["a", "b", "c"], 4)
    }

    fn autoencoder() -> TinyModel {
        TinyModel::autoencoder(8, &["a", "b", "c"], 4)
    }

    fn means(c: usize, d: usize) -> Vec<Vec<f32>> {
        (0..c)
            .map(|i| (0..d).map(|j| (i * d + j) as f32 * 0.1).collect())
            .collect()
    }

    fn spec(head: ScoringHead, class_rule: ClassRule) -> ScoringSpec {
        ScoringSpec {
            head,
            class_rule,
            thresholds: vec![1.0, 2.0, 3.0],
            detector_json: r#"{"kind":"test"}"#.into(),
        }
    }

    fn euclid() -> ScoringHead {
        ScoringHead::Whitened {
            means: means(3, 4),
            transforms: None,
        }
    }

    /// The error message of a rejected spec; the model must be left unchanged.
    fn rejected(tiny: &TinyModel, spec: &ScoringSpec) -> String {
        let mut model = tiny.model.clone();
        let err = append_scoring(&mut model, spec).expect_err("spec must be rejected");
        assert_eq!(model, tiny.model, "a rejected spec changed the model");
        match err {
            OnnxError::Edit(msg) => msg,
            other => panic!("not an Edit error: {other}"),
        }
    }

    #[test]
    fn appends_four_outputs_and_the_metadata() {
        let tiny = classifier();
        let mut model = tiny.model.clone();
        append_scoring(&mut model, &spec(euclid(), ClassRule::Logits)).unwrap();
        assert_eq!(
            output_names(&model),
            [
                "logits",
                "embedding",
                "score",
                "class_index",
                "threshold",
                "anomalous"
            ]
        );
        let meta = ModelMetadata::from_json(metadata_prop(&model, METADATA_KEY).unwrap()).unwrap();
        assert_eq!(meta.outputs, output_names(&model));
        assert_eq!(
            metadata_prop(&model, DETECTOR_KEY),
            Some(r#"{"kind":"test"}"#)
        );
        let graph = model.graph.as_ref().unwrap();
        let old = tiny.model.graph.as_ref().unwrap();
        for n in &graph.node[old.node.len()..] {
            assert!(n.name.starts_with(PREFIX), "{}", n.name);
        }
        for t in &graph.initializer[old.initializer.len()..] {
            assert!(t.name.starts_with(PREFIX), "{}", t.name);
        }
        // A second head collides with the first.
        let msg = rejected(
            &TinyModel {
                model,
                ..tiny.clone()
            },
            &spec(euclid(), ClassRule::Logits),
        );
        assert!(msg.contains("already"), "{msg}");
    }

    #[test]
    fn rejects_shape_mismatches() {
        let tiny = classifier();
        let mut bad = spec(euclid(), ClassRule::LowestScore);
        bad.thresholds.pop();
        assert!(rejected(&tiny, &bad).contains("2 thresholds for 3 classes"));

        let head = ScoringHead::Whitened {
            means: means(2, 4),
            transforms: None,
        };
        assert!(rejected(&tiny, &spec(head, ClassRule::Logits)).contains("2 classes"));
        let head = ScoringHead::Whitened {
            means: means(3, 5),
            transforms: None,
        };
        assert!(rejected(&tiny, &spec(head, ClassRule::Logits)).contains("d = 4"));
        let head = ScoringHead::Whitened {
            means: means(3, 4),
            transforms: Some(vec![vec![0.0; 16], vec![0.0; 16], vec![0.0; 15]]),
        };
        assert!(rejected(&tiny, &spec(head, ClassRule::Logits)).contains("transforms[2]"));
        let mut nan = means(3, 4);
        nan[1][2] = f32::NAN;
        let head = ScoringHead::Whitened {
            means: nan,
            transforms: None,
        };
        assert!(rejected(&tiny, &spec(head, ClassRule::Logits)).contains("non-finite"));

        let rule = ClassRule::NearestMean(means(3, 3));
        assert!(rejected(&tiny, &spec(euclid(), rule)).contains("NearestMean means[0]"));
    }

    #[test]
    fn rejects_bad_knn_references() {
        let tiny = classifier();
        let knn = |k, n: &[usize]| ScoringHead::Knn {
            k,
            references: n.iter().map(|n| vec![0.5; n * 4]).collect(),
        };
        assert!(
            rejected(&tiny, &spec(knn(3, &[3, 2, 5]), ClassRule::Logits))
                .contains("references[1] has N = 2 embeddings, fewer than k = 3")
        );
        assert!(rejected(&tiny, &spec(knn(0, &[3, 3, 3]), ClassRule::Logits)).contains("k must"));
        assert!(rejected(&tiny, &spec(knn(1, &[3, 3]), ClassRule::Logits)).contains("2 classes"));
        let ragged = ScoringHead::Knn {
            k: 1,
            references: vec![vec![0.0; 8], vec![0.0; 7], vec![0.0; 4]],
        };
        assert!(rejected(&tiny, &spec(ragged, ClassRule::Logits)).contains("multiple of d = 4"));
    }

    #[test]
    fn rejects_incompatible_rules_and_heads() {
        let (cls, ae) = (classifier(), autoencoder());
        let recon = |pool| ScoringHead::Recon { pool };
        let msg = rejected(
            &cls,
            &spec(recon(None), ClassRule::NearestMean(means(3, 4))),
        );
        assert!(msg.contains("autoencoder"), "{msg}");
        let msg = rejected(&ae, &spec(recon(None), ClassRule::LowestScore));
        assert!(msg.contains("LowestScore"), "{msg}");
        let msg = rejected(&ae, &spec(recon(None), ClassRule::Logits));
        assert!(msg.contains("\"logits\" output"), "{msg}");
        let msg = rejected(&ae, &spec(euclid(), ClassRule::Logits));
        assert!(msg.contains("\"logits\" output"), "{msg}");
        for pool in [0, 9] {
            let msg = rejected(
                &ae,
                &spec(recon(Some(pool)), ClassRule::NearestMean(means(3, 4))),
            );
            assert!(msg.contains("pool"), "{msg}");
        }
        // The largest window fits.
        let mut model = ae.model.clone();
        append_scoring(
            &mut model,
            &spec(recon(Some(8)), ClassRule::NearestMean(means(3, 4))),
        )
        .unwrap();
    }

    #[test]
    fn rejects_models_it_cannot_edit() {
        let tiny = classifier();
        let mut bad = spec(euclid(), ClassRule::Logits);
        bad.detector_json = "{not json".into();
        assert!(rejected(&tiny, &bad).contains("detector_json"));

        let mut old = tiny.clone();
        old.model.opset_import[0].version = 17;
        assert!(rejected(&old, &spec(euclid(), ClassRule::Logits)).contains("opset"));

        let mut bare = tiny.clone();
        bare.model.metadata_props.clear();
        assert!(rejected(&bare, &spec(euclid(), ClassRule::Logits)).contains("metadata"));

        let mut taken = tiny.clone();
        crate::onnx::rename_value(&mut taken.model, "embedding", "dk_score/z3").unwrap();
        let msg = rejected(&taken, &spec(euclid(), ClassRule::Logits));
        assert!(msg.contains("reserved"), "{msg}");

        let mut taken = tiny;
        crate::onnx::rename_value(&mut taken.model, "logits", "score").unwrap();
        let msg = rejected(&taken, &spec(euclid(), ClassRule::NearestMean(means(3, 4))));
        assert!(msg.contains("\"score\""), "{msg}");
    }

    #[test]
    fn reference_scores_by_hand() {
        // Two images, d = 2, two classes.
        let embedding = [0.0f32, 0.0, 3.0, 4.0];
        let s = |head, class_rule| ScoringSpec {
            head,
            class_rule,
            thresholds: vec![1.0, 1.0],
            detector_json: "{}".into(),
        };
        let euclid = ScoringHead::Whitened {
            means: vec![vec![0.0, 0.0], vec![3.0, 0.0]],
            transforms: None,
        };
        let got = reference_scores(
            &s(euclid, ClassRule::LowestScore),
            &[],
            &[],
            &embedding,
            (0, 0),
        );
        assert_eq!(got, [(0.0, 0), (4.0, 1)]);
        // W = diag(2, 1/2): class 0 distance of (3, 4) = ‖(6, 2)‖.
        let white = ScoringHead::Whitened {
            means: vec![vec![0.0, 0.0], vec![0.0, 0.0]],
            transforms: Some(vec![vec![2.0, 0.0, 0.0, 0.5], vec![1.0, 0.0, 0.0, 1.0]]),
        };
        let logits = [0.0f32, 1.0, 5.0, -1.0];
        let got = reference_scores(
            &s(white, ClassRule::Logits),
            &[],
            &logits,
            &embedding,
            (0, 0),
        );
        assert_eq!(got, [(0.0, 1), (40f64.sqrt(), 0)]);
        let knn = ScoringHead::Knn {
            k: 2,
            references: vec![
                vec![0.0, 0.0, 0.0, 1.0, 0.0, 10.0],
                vec![3.0, 4.0, 3.0, 5.0],
            ],
        };
        let rule = ClassRule::NearestMean(vec![vec![0.0, 0.0], vec![3.0, 4.0]]);
        let got = reference_scores(&s(knn, rule), &[], &[], &embedding, (0, 0));
        assert_eq!(got, [(0.5, 0), (0.5, 1)]);
        // Recon on one 2×2 image: squared errors per channel plane.
        let input = [1.0f32; 12];
        let mut recon = [1.0f32; 12];
        recon[0] = 0.0; // channel 0, pixel 0: error 1
        recon[4 + 3] = -1.0; // channel 1, pixel 3: error 4
        let rule = ClassRule::NearestMean(vec![vec![0.0, 0.0]]);
        let mut one = s(ScoringHead::Recon { pool: None }, rule);
        one.thresholds = vec![1.0];
        let got = reference_scores(&one, &input, &recon, &[0.0, 0.0], (2, 2));
        assert_eq!(got.len(), 1);
        assert!(
            (got[0].0 - 5.0 / 12.0).abs() < 1e-15 && got[0].1 == 0,
            "{got:?}"
        );
        one.head = ScoringHead::Recon { pool: Some(1) };
        let got = reference_scores(&one, &input, &recon, &[0.0, 0.0], (2, 2));
        assert_eq!(got, [(4.0 / 3.0, 0)]);
    }
}
