//! QuantizeLinear/DequantizeLinear placement and the int8 arithmetic, as ONNX Runtime's own
//! quantizer does it (ARCHITECTURE.md, "Static int8 QDQ"):
//! - activations uint8 asymmetric per tensor (or int8 with zero point 0 when
//!   `symmetric_activations`), `s = (rmax − rmin)/(qmax − qmin)` over a range that includes 0;
//! - weights int8 symmetric per output channel in [−127, 127], stored pre-quantized and read
//!   through a DequantizeLinear only;
//! - biases int32 with `s = s_x · s_w`, zero point 0;
//! - a Relu after a quantized Conv/Gemm/Add is removed (uint8 with zero point 0 clips at 0
//!   exactly as Relu does); MaxPool, Reshape, Flatten and Transpose reuse their input's
//!   parameters; Add, GlobalAveragePool, AveragePool, Concat and Resize get their own.
//!
//! [`plan`] decides which values get a Q/DQ pair and which calibrated range each uses;
//! [`apply`] rewrites the graph once the ranges are known.

use std::collections::{HashMap, HashSet};

use defectkit_core::onnx::build::{attr_int, float_tensor, named_node, raw_tensor};
use defectkit_core::onnx::{tensor_proto::DataType, GraphProto, NodeProto};

use super::graph::{
    attr_i, consumers, float_values, initializer, is_graph_output, producer,
    remove_unused_initializers, Namer,
};

/// Ops quantized with a weight (per channel) and a bias (int32).
const WEIGHTED: [&str; 3] = ["Conv", "Gemm", "MatMul"];
/// Ops whose activation inputs and output get their own parameters.
const OWN: [&str; 6] = [
    "Add",
    "GlobalAveragePool",
    "AveragePool",
    "Concat",
    "Resize",
    "Sigmoid",
];
/// Ops that run on the quantized values unchanged: their output reuses the input's parameters.
const REUSE: [&str; 5] = ["MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze"];
/// Producers after which a Relu can be removed.
const RELU_ABSORBERS: [&str; 4] = ["Conv", "Gemm", "MatMul", "Add"];

/// The ops the fusion check expects ONNX Runtime to turn into int8 kernels.
pub const FUSED_KINDS: [&str; 7] = [
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "GlobalAveragePool",
    "AveragePool",
    "Concat",
];

/// Round half to even, as QuantizeLinear and NumPy's `round` do.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// Scale and zero point of one quantized tensor (or channel).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// The step between two quantized values.
    pub scale: f32,
    /// The quantized value of real 0.
    pub zero_point: i32,
    /// int8 (true) or uint8 (false).
    pub signed: bool,
}

impl QParams {
    /// The quantized range.
    pub fn bounds(&self) -> (i32, i32) {
        if self.signed {
            (-128, 127)
        } else {
            (0, 255)
        }
    }

    /// `clamp(round_half_even(x / s) + zp)`, as QuantizeLinear computes it.
    pub fn quantize(&self, x: f32) -> i32 {
        let (lo, hi) = self.bounds();
        let q = round_half_even((x / self.scale) as f64) + self.zero_point as f64;
        q.clamp(lo as f64, hi as f64) as i32
    }

    /// `(q − zp) · s`.
    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }
}

/// ONNX Runtime's `compute_scale_zp`: the range is widened to include 0 (and made symmetric
/// when asked); a range too small to divide gives scale 1 and zero point 0.
pub fn scale_zero_point(rmin: f32, rmax: f32, qmin: i32, qmax: i32, symmetric: bool) -> (f32, i32) {
    let mut lo = rmin.min(0.0);
    let mut hi = rmax.max(0.0);
    if symmetric {
        let absmax = lo.abs().max(hi.abs());
        lo = -absmax;
        hi = absmax;
    }
    let scale = (hi as f64 - lo as f64) / (qmax as f64 - qmin as f64);
    if scale < f32::MIN_POSITIVE as f64 {
        return (1.0, 0);
    }
    let zero_point = if symmetric {
        round_half_even((qmin + qmax) as f64 / 2.0)
    } else {
        round_half_even(qmin as f64 - lo as f64 / scale)
    };
    (scale as f32, zero_point as i32)
}

/// The parameters of an activation calibrated to `[min, max]`.
pub fn activation_params(min: f32, max: f32, symmetric: bool) -> QParams {
    if symmetric {
        // ONNX Runtime's int8 symmetric range is [−127, 127].
        let (scale, zero_point) = scale_zero_point(min, max, -127, 127, true);
        QParams {
            scale,
            zero_point,
            signed: true,
        }
    } else {
        let (scale, zero_point) = scale_zero_point(min, max, 0, 255, false);
        QParams {
            scale,
            zero_point,
            signed: false,
        }
    }
}

/// Per-channel symmetric int8 weights: scale `max|w_c| / 127` per channel (ONNX Runtime's
/// `compute_scale_zp` with the range [−127, 127]) and `clamp(round_half_even(w / s_c))`.
/// `channel_of(i)` names the channel of flat index `i` (Conv `[C, …]`: `i / per_channel`;
/// Gemm `[K, N]` by column: `i % N`).
pub fn quantize_weights(
    values: &[f32],
    channels: usize,
    channel_of: impl Fn(usize) -> usize,
    reduce_range: bool,
) -> (Vec<f32>, Vec<i8>) {
    let limit = if reduce_range { 64 } else { 127 };
    let mut lo = vec![0.0f32; channels];
    let mut hi = vec![0.0f32; channels];
    for (i, &v) in values.iter().enumerate() {
        let c = channel_of(i);
        lo[c] = lo[c].min(v);
        hi[c] = hi[c].max(v);
    }
    let scales: Vec<f32> = (0..channels)
        .map(|c| scale_zero_point(lo[c], hi[c], -limit, limit, true).0)
        .collect();
    let quantized = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let q = round_half_even((v / scales[channel_of(i)]) as f64);
            q.clamp(-limit as f64, limit as f64) as i8
        })
        .collect();
    (scales, quantized)
}

/// int32 bias with scale `x_scale · w_scale_c` (in f32, as ONNX Runtime), rounded in f64.
pub fn quantize_bias(bias: &[f32], x_scale: f32, w_scales: &[f32]) -> (Vec<f32>, Vec<i32>) {
    let scales: Vec<f32> = w_scales.iter().map(|w| x_scale * w).collect();
    let q = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| {
            round_half_even(b as f64 / s as f64).clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    (scales, q)
}

/// Which values get Q/DQ pairs, and whose calibrated range each one uses.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The graph with removable Relus removed (their producer now writes their output).
    pub graph: GraphProto,
    /// Values to quantize, in graph order, with the value whose range they take.
    pub tensors: Vec<(String, String)>,
    /// Nodes quantized (weighted and own-parameter ones), by name, in graph order.
    pub quantized_nodes: Vec<String>,
    /// Relu nodes removed.
    pub removed_relus: Vec<String>,
    /// Graph outputs that stay FP32 (a quantized consumer reads a Q/DQ copy); the others
    /// (written by a quantized Conv) are the dequantized value.
    pub float_graph_outputs: HashSet<String>,
}

impl Plan {
    /// The nodes that run in FP32 on purpose (kept by the user or the accuracy search, or by
    /// design: a pooling that writes a float graph output), and the values they write, for the
    /// fusion check. ONNX Runtime fuses a float Conv with its Relu and names the result after
    /// the Relu's output, so those outputs count too. Read from the plan's graph, where
    /// absorbed Relus are gone (a quantized Conv writes its Relu's output there).
    pub fn float_nodes(&self) -> (HashSet<String>, HashSet<String>) {
        let names: HashSet<String> = self
            .graph
            .node
            .iter()
            .filter(|n| !self.quantized_nodes.contains(&n.name))
            .map(|n| n.name.clone())
            .collect();
        let mut outputs: HashSet<String> = self
            .graph
            .node
            .iter()
            .filter(|n| names.contains(&n.name))
            .flat_map(|n| n.output.iter().cloned())
            .collect();
        for n in &self.graph.node {
            if n.op_type == "Relu" && n.input.iter().any(|i| outputs.contains(i)) {
                outputs.extend(n.output.iter().cloned());
            }
        }
        (names, outputs)
    }

    /// The values whose ranges calibration must measure (in the graph before Relu removal,
    /// where all of them exist), without repeats.
    pub fn range_sources(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.tensors
            .iter()
            .filter(|(_, src)| seen.insert(src.clone()))
            .map(|(_, src)| src.clone())
            .collect()
    }
}

/// Whether `node` can be quantized with its weight: a weight initializer of the right rank,
/// a bias initializer (if any) of one value per channel, Gemm without alpha/beta/transA.
fn weighted_ok(g: &GraphProto, node: &NodeProto) -> bool {
    let Some(w) = node.input.get(1).and_then(|w| initializer(g, w)) else {
        return false;
    };
    if w.data_type != DataType::FLOAT as i32 {
        return false;
    }
    let bias_ok = |channels: i64| {
        node.input
            .get(2)
            .is_none_or(|b| b.is_empty() || initializer(g, b).is_some_and(|t| t.dims == [channels]))
    };
    match node.op_type.as_str() {
        "Conv" => w.dims.len() >= 3 && bias_ok(w.dims[0]),
        "Gemm" => {
            let plain = super::graph::attr_f(node, "alpha", 1.0) == 1.0
                && super::graph::attr_f(node, "beta", 1.0) == 1.0
                && attr_i(node, "transA", 0) == 0;
            let n = if attr_i(node, "transB", 0) == 1 {
                w.dims[0]
            } else {
                w.dims[1]
            };
            plain && w.dims.len() == 2 && bias_ok(n)
        }
        "MatMul" => w.dims.len() == 2 && node.input.len() == 2,
        _ => false,
    }
}

/// The activation inputs of a quantized node (the ones that get Q/DQ).
fn activation_inputs(g: &GraphProto, node: &NodeProto) -> Vec<String> {
    let take: Vec<&String> = match node.op_type.as_str() {
        "Conv" | "Gemm" | "MatMul" | "Resize" | "GlobalAveragePool" | "AveragePool" | "Sigmoid"
        | "MaxPool" | "Reshape" | "Flatten" | "Transpose" | "Squeeze" => {
            node.input.iter().take(1).collect()
        }
        _ => node.input.iter().collect(),
    };
    take.into_iter()
        .filter(|i| !i.is_empty() && initializer(g, i).is_none())
        .cloned()
        .collect()
}

/// Whether `op` is quantized with a weight (Conv, Gemm, MatMul): the "layers" of the
/// accuracy-aware mode.
pub fn is_weighted(op: &str) -> bool {
    WEIGHTED.contains(&op)
}

/// Every value a plan could need a range for, whichever nodes stay float: the graph inputs
/// and the outputs of every node of a kind the quantizer handles.
pub fn every_value(g: &GraphProto) -> Vec<String> {
    let mut out: Vec<String> = g
        .input
        .iter()
        .filter(|v| initializer(g, &v.name).is_none())
        .map(|v| v.name.clone())
        .collect();
    for n in &g.node {
        let op = n.op_type.as_str();
        if WEIGHTED.contains(&op) || OWN.contains(&op) || REUSE.contains(&op) || op == "Relu" {
            out.extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    out
}

/// Decides the placement on the folded graph `folded`; nodes named in `keep_float` stay FP32.
pub fn plan(folded: &GraphProto, keep_float: &HashSet<String>, symmetric: bool) -> Plan {
    let mut g = folded.clone();
    let quantizable = |g: &GraphProto, n: &NodeProto| {
        !keep_float.contains(&n.name)
            && (OWN.contains(&n.op_type.as_str())
                || (WEIGHTED.contains(&n.op_type.as_str()) && weighted_ok(g, n)))
    };
    // Relus after a quantized producer: with uint8 and zero point 0, the quantization clips.
    let mut removed_relus = Vec::new();
    if !symmetric {
        let mut i = 0;
        while i < g.node.len() {
            let relu = &g.node[i];
            let absorbed = relu.op_type == "Relu"
                && !keep_float.contains(&relu.name)
                && producer(&g, &relu.input[0]).is_some_and(|p| {
                    let prod = &g.node[p];
                    RELU_ABSORBERS.contains(&prod.op_type.as_str())
                        && quantizable(&g, prod)
                        && consumers(&g, &relu.input[0]).len() == 1
                        && !is_graph_output(&g, &relu.input[0])
                });
            if absorbed {
                let relu = g.node.remove(i);
                let p = producer(&g, &relu.input[0]).expect("checked");
                g.node[p].output[0] = relu.output[0].clone();
                removed_relus.push(relu.name);
            } else {
                i += 1;
            }
        }
    }
    let inputs: HashSet<String> = g.input.iter().map(|v| v.name.clone()).collect();
    let mut source: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut quantized_nodes = Vec::new();
    let add =
        |t: &str, src: String, source: &mut HashMap<String, String>, order: &mut Vec<String>| {
            if !source.contains_key(t) {
                source.insert(t.to_string(), src);
                order.push(t.to_string());
            }
        };
    // The graph outputs (embedding, logits) stay FP32 where ONNX Runtime allows it: a graph
    // output, and what a Reshape/Flatten of it reads, is not quantized after a pooling or
    // Add (those then run in float on a dequantized input), and a Gemm/MatMul writing it
    // runs as QGemm/MatMulIntegerToFloat with a float output. Only a Conv must quantize its
    // output to fuse; then the graph output is the dequantized value.
    let mut float_values: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for node in g.node.iter().rev() {
        if REUSE.contains(&node.op_type.as_str())
            && node.output.iter().any(|o| float_values.contains(o))
        {
            float_values.insert(node.input[0].clone());
        }
    }
    let mut float_graph_outputs: HashSet<String> = HashSet::new();
    for node in &g.node {
        let op = node.op_type.as_str();
        let out = node.output.first();
        let float_out = out.is_some_and(|o| float_values.contains(o));
        if quantizable(&g, node) {
            if float_out && OWN.contains(&op) {
                continue;
            }
            for x in activation_inputs(&g, node) {
                add(&x, x.clone(), &mut source, &mut order);
            }
            if let Some(out) = out {
                if float_out && op != "Conv" {
                    // A float output (QGemm / MatMulIntegerToFloat).
                } else {
                    add(out, out.clone(), &mut source, &mut order);
                }
            }
            quantized_nodes.push(node.name.clone());
        } else if REUSE.contains(&op) && !keep_float.contains(&node.name) && !float_out {
            let x = &node.input[0];
            if let Some(src) = source.get(x).cloned() {
                add(&node.output[0], src, &mut source, &mut order);
            }
        }
    }
    for o in &g.output {
        let written_by_conv = producer(&g, &o.name).is_some_and(|p| {
            g.node[p].op_type == "Conv" && quantized_nodes.contains(&g.node[p].name)
        });
        if !written_by_conv {
            float_graph_outputs.insert(o.name.clone());
        }
    }
    // Graph order: graph inputs first, then by producer.
    let position = |t: &str| -> usize {
        if inputs.contains(t) {
            0
        } else {
            producer(&g, t).map(|p| p + 1).unwrap_or(0)
        }
    };
    order.sort_by_key(|t| position(t));
    let tensors = order
        .into_iter()
        .map(|t| {
            let src = source[&t].clone();
            (t, src)
        })
        .collect();
    Plan {
        graph: g,
        tensors,
        quantized_nodes,
        removed_relus,
        float_graph_outputs,
    }
}

/// Zero-point tensor of `params`' type.
fn zero_point_tensor(
    name: &str,
    dims: &[i64],
    values: &[i32],
    signed: bool,
) -> defectkit_core::onnx::TensorProto {
    if signed {
        raw_tensor(
            name,
            dims,
            DataType::INT8,
            values.iter().map(|&v| v as i8 as u8).collect(),
        )
    } else {
        raw_tensor(
            name,
            dims,
            DataType::UINT8,
            values.iter().map(|&v| v as u8).collect(),
        )
    }
}

/// Rewrites `plan.graph` into the QDQ graph with the calibrated `ranges` (`[min, max]` per
/// range source). Every value of the plan must have a range.
pub fn apply(
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    symmetric: bool,
    reduce_range: bool,
) -> Result<GraphProto, String> {
    let mut g = plan.graph.clone();
    let mut namer = Namer::new(&g);
    let mut params: HashMap<String, QParams> = HashMap::new();
    for (t, src) in &plan.tensors {
        let &(lo, hi) = ranges
            .get(src)
            .ok_or_else(|| format!("no calibrated range for {src:?}"))?;
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(format!(
                "the calibrated range of {src:?} is not finite: [{lo}, {hi}]"
            ));
        }
        params.insert(t.clone(), activation_params(lo, hi, symmetric));
    }
    let quantized: HashSet<&String> = plan.quantized_nodes.iter().collect();
    let old_nodes = std::mem::take(&mut g.node);
    let mut new_nodes: Vec<NodeProto> = Vec::with_capacity(old_nodes.len() * 3);
    let mut initializers = Vec::new();
    // DQ output name per quantized value, for the consumers.
    let mut dequantized: HashMap<String, String> = HashMap::new();
    let graph_outputs: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();

    // Emits the Q/DQ pair of `t` (read from `float_name`, dequantized into `dq_name`).
    let emit_pair = |t: &str,
                     float_name: &str,
                     dq_name: &str,
                     new_nodes: &mut Vec<NodeProto>,
                     initializers: &mut Vec<defectkit_core::onnx::TensorProto>,
                     namer: &mut Namer| {
        let p = params[t];
        let scale = namer.fresh(&format!("{t}_scale"));
        let zp = namer.fresh(&format!("{t}_zero_point"));
        let q = namer.fresh(&format!("{t}_quantized"));
        initializers.push(float_tensor(&scale, &[], &[p.scale]));
        initializers.push(zero_point_tensor(&zp, &[], &[p.zero_point], p.signed));
        let qn = namer.fresh(&format!("{t}_QuantizeLinear"));
        let dqn = namer.fresh(&format!("{t}_DequantizeLinear"));
        new_nodes.push(named_node(
            &qn,
            "QuantizeLinear",
            &[float_name, &scale, &zp],
            &[&q],
            vec![],
        ));
        new_nodes.push(named_node(
            &dqn,
            "DequantizeLinear",
            &[&q, &scale, &zp],
            &[dq_name],
            vec![],
        ));
    };

    let planned: HashSet<&String> = plan.tensors.iter().map(|(t, _)| t).collect();
    let graph_inputs: Vec<String> = g.input.iter().map(|v| v.name.clone()).collect();
    for input in &graph_inputs {
        if planned.contains(input) {
            let dq = namer.fresh(&format!("{input}_dequantized"));
            emit_pair(
                input,
                input,
                &dq,
                &mut new_nodes,
                &mut initializers,
                &mut namer,
            );
            dequantized.insert(input.clone(), dq);
        }
    }
    for mut node in old_nodes {
        let x_original = node.input.first().cloned().unwrap_or_default();
        for i in node.input.iter_mut() {
            if let Some(dq) = dequantized.get(i.as_str()) {
                *i = dq.clone();
            }
        }
        if quantized.contains(&node.name) && WEIGHTED.contains(&node.op_type.as_str()) {
            let x_scale = params.get(&x_original).map(|p| p.scale).ok_or_else(|| {
                format!("{}: its input {x_original:?} is not quantized", node.name)
            })?;
            quantize_weighted(
                &g,
                &mut node,
                x_scale,
                reduce_range,
                &mut new_nodes,
                &mut initializers,
                &mut namer,
            )?;
        }
        let outputs = node.output.clone();
        let mut pairs = Vec::new();
        let mut branch: Option<NodeProto> = None;
        for out in &outputs {
            if !planned.contains(out) {
                continue;
            }
            let float_output = plan.float_graph_outputs.contains(out);
            if float_output
                && quantized.contains(&node.name)
                && WEIGHTED.contains(&node.op_type.as_str())
            {
                // A Gemm whose float output is a graph output and is also read by quantized
                // ops: ONNX Runtime fuses neither use into one QGemm (a float output and a Q
                // consumer at once), so a second copy of the node, sharing its dequantized
                // weights, writes the value the Q/DQ pair quantizes.
                let branch_out = namer.fresh(&format!("{out}_for_quantized"));
                let mut copy = node.clone();
                copy.name = namer.fresh(&format!("{}_for_quantized", node.name));
                copy.output = vec![branch_out.clone()];
                branch = Some(copy);
                let dq = namer.fresh(&format!("{out}_dequantized"));
                dequantized.insert(out.clone(), dq.clone());
                pairs.push((out.clone(), branch_out, dq));
                continue;
            }
            if graph_outputs.contains(out) && !float_output {
                // The graph output becomes the DQ output; the producer writes a new name.
                let float_name = namer.fresh(&format!("{out}_float"));
                for o in node.output.iter_mut() {
                    if o == out {
                        *o = float_name.clone();
                    }
                }
                pairs.push((out.clone(), float_name, out.clone()));
            } else {
                let dq = namer.fresh(&format!("{out}_dequantized"));
                dequantized.insert(out.clone(), dq.clone());
                pairs.push((out.clone(), out.clone(), dq));
            }
        }
        new_nodes.push(node);
        new_nodes.extend(branch);
        for (t, float_name, dq) in pairs {
            emit_pair(
                &t,
                &float_name,
                &dq,
                &mut new_nodes,
                &mut initializers,
                &mut namer,
            );
        }
    }
    g.node = new_nodes;
    g.initializer.extend(initializers);
    remove_unused_initializers(&mut g);
    g.value_info.clear();
    Ok(g)
}

/// Replaces a weighted node's weight (and bias) inputs by DequantizeLinear outputs of
/// pre-quantized initializers.
fn quantize_weighted(
    g: &GraphProto,
    node: &mut NodeProto,
    x_scale: f32,
    reduce_range: bool,
    new_nodes: &mut Vec<NodeProto>,
    initializers: &mut Vec<defectkit_core::onnx::TensorProto>,
    namer: &mut Namer,
) -> Result<(), String> {
    let w_name = node.input[1].clone();
    let w = initializer(g, &w_name)
        .ok_or_else(|| format!("{}: weight {w_name:?} is not an initializer", node.name))?;
    let values = float_values(w)?;
    let dims = w.dims.clone();
    let (channels, axis): (usize, i64) = match node.op_type.as_str() {
        "Conv" => (dims[0] as usize, 0),
        "Gemm" if attr_i(node, "transB", 0) == 1 => (dims[0] as usize, 0),
        _ => (dims[1] as usize, 1),
    };
    let per_row = dims[1..].iter().product::<i64>() as usize;
    let (w_scales, w_q) = if axis == 0 {
        quantize_weights(&values, channels, |i| i / per_row.max(1), reduce_range)
    } else {
        quantize_weights(&values, channels, |i| i % channels.max(1), reduce_range)
    };
    let wq = namer.fresh(&format!("{w_name}_quantized"));
    let ws = namer.fresh(&format!("{w_name}_scale"));
    let wz = namer.fresh(&format!("{w_name}_zero_point"));
    let wd = namer.fresh(&format!("{w_name}_dequantized"));
    initializers.push(raw_tensor(
        &wq,
        &dims,
        DataType::INT8,
        w_q.iter().map(|&v| v as u8).collect(),
    ));
    initializers.push(float_tensor(&ws, &[channels as i64], &w_scales));
    initializers.push(zero_point_tensor(
        &wz,
        &[channels as i64],
        &vec![0; channels],
        true,
    ));
    new_nodes.push(named_node(
        &namer.fresh(&format!("{w_name}_DequantizeLinear")),
        "DequantizeLinear",
        &[&wq, &ws, &wz],
        &[&wd],
        vec![attr_int("axis", axis)],
    ));
    node.input[1] = wd;
    if let Some(b_name) = node.input.get(2).filter(|b| !b.is_empty()).cloned() {
        let b = initializer(g, &b_name)
            .ok_or_else(|| format!("{}: bias {b_name:?} is not an initializer", node.name))?;
        let bias = float_values(b)?;
        let (b_scales, b_q) = quantize_bias(&bias, x_scale, &w_scales);
        let bq = namer.fresh(&format!("{b_name}_quantized"));
        let bs = namer.fresh(&format!("{b_name}_scale"));
        let bz = namer.fresh(&format!("{b_name}_zero_point"));
        let bd = namer.fresh(&format!("{b_name}_dequantized"));
        initializers.push(raw_tensor(
            &bq,
            &[channels as i64],
            DataType::INT32,
            b_q.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        initializers.push(float_tensor(&bs, &[channels as i64], &b_scales));
        initializers.push(raw_tensor(
            &bz,
            &[channels as i64],
            DataType::INT32,
            vec![0u8; 4 * channels],
        ));
        new_nodes.push(named_node(
            &namer.fresh(&format!("{b_name}_DequantizeLinear")),
            "DequantizeLinear",
            &[&bq, &bs, &bz],
            &[&bd],
            vec![attr_int("axis", 0)],
        ));
        node.input[2] = bd;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_and_zero_point_follow_onnx_runtime() {
        // A ReLU output: zero point 0.
        let p = activation_params(0.0, 6.0, false);
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 6.0 / 255.0).abs() < 1e-9);
        // Negative range: 0 stays exactly representable.
        let p = activation_params(-1.0, 3.0, false);
        assert_eq!(p.zero_point, 64);
        assert_eq!(p.dequantize(p.quantize(0.0)), 0.0);
        // A positive-only range widens to 0.
        let p = activation_params(2.0, 4.0, false);
        assert_eq!(p.zero_point, 0);
        // Zero range: scale 1.
        assert_eq!(activation_params(0.0, 0.0, false).scale, 1.0);
        // Symmetric int8.
        let p = activation_params(-2.0, 1.0, true);
        assert_eq!((p.zero_point, p.signed), (0, true));
        assert!((p.scale - 2.0 / 127.0).abs() < 1e-7);
    }

    #[test]
    fn quantize_rounds_half_to_even_and_clamps() {
        let p = QParams {
            scale: 1.0,
            zero_point: 0,
            signed: false,
        };
        assert_eq!(p.quantize(2.5), 2);
        assert_eq!(p.quantize(3.5), 4);
        assert_eq!(p.quantize(-3.0), 0);
        assert_eq!(p.quantize(300.0), 255);
    }
}
