//! Graph simplifications before quantization, each exact in FP32 (up to rounding):
//! - a Reshape of an initializer by a constant shape becomes the reshaped initializer (the
//!   exporter reshapes biases to `[1, n]` at run time);
//! - BatchNormalization after a Conv is folded into the Conv's weights and bias
//!   (`W' = W·γ/√(σ²+ε)`, `b' = (b − μ)·γ/√(σ²+ε) + β`), so the Conv is quantized as one op;
//! - MatMul by a weight matrix followed by Add of a bias becomes one Gemm, which ONNX Runtime
//!   fuses into QGemm (a MatMul + Add pair would stay two ops).

use defectkit_core::onnx::build::{attr_int, float_tensor, named_node};
use defectkit_core::onnx::{tensor_i64s, tensor_proto::DataType, GraphProto, TensorProto};

use super::graph::{
    attr_f, consumers, float_values, initializer, initializer_index, is_graph_output, producer,
    remove_unused_initializers,
};

/// What the passes changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldReport {
    /// Reshapes of initializers folded into new initializers.
    pub constant_reshapes: usize,
    /// BatchNormalization nodes folded into their Conv.
    pub batchnorms: usize,
    /// MatMul + Add pairs fused into Gemm.
    pub gemms: usize,
}

/// Runs every pass, in order, on `g`.
pub fn simplify(g: &mut GraphProto) -> Result<FoldReport, String> {
    let report = FoldReport {
        constant_reshapes: fold_constant_reshapes(g)?,
        batchnorms: fold_batchnorms(g)?,
        gemms: fuse_matmul_add(g)?,
    };
    remove_unused_initializers(g);
    // Shapes recorded for values that no longer exist would only mislead.
    let names = super::graph::value_names(g);
    g.value_info.retain(|v| names.contains(&v.name));
    Ok(report)
}

/// The target dims of a Reshape given the input dims (`0` copies, one `-1` is inferred).
fn reshape_dims(input: &[i64], shape: &[i64]) -> Result<Vec<i64>, String> {
    let total: i64 = input.iter().product();
    let mut out: Vec<i64> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d == 0 {
                input.get(i).copied().unwrap_or(0)
            } else {
                d
            }
        })
        .collect();
    let known: i64 = out.iter().filter(|&&d| d != -1).product();
    if let Some(pos) = out.iter().position(|&d| d == -1) {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {input:?} to {shape:?}"));
        }
        out[pos] = total / known;
    }
    if out.iter().product::<i64>() != total {
        return Err(format!("cannot reshape {input:?} to {shape:?}"));
    }
    Ok(out)
}

/// Folds `Reshape(initializer, constant shape)` into a new initializer. Returns how many.
pub fn fold_constant_reshapes(g: &mut GraphProto) -> Result<usize, String> {
    let mut folded = 0;
    let mut i = 0;
    while i < g.node.len() {
        let n = &g.node[i];
        let is_constant = n.op_type == "Reshape"
            && n.input.len() == 2
            && initializer(g, &n.input[0]).is_some_and(|t| t.data_type == DataType::FLOAT as i32)
            && initializer(g, &n.input[1]).is_some();
        if !is_constant {
            i += 1;
            continue;
        }
        let data = initializer(g, &n.input[0]).expect("checked");
        let shape = tensor_i64s(initializer(g, &n.input[1]).expect("checked"));
        let dims = reshape_dims(&data.dims, &shape).map_err(|e| format!("node {}: {e}", n.name))?;
        let mut reshaped: TensorProto = data.clone();
        reshaped.name = n.output[0].clone();
        reshaped.dims = dims;
        g.initializer.push(reshaped);
        g.node.remove(i);
        folded += 1;
    }
    Ok(folded)
}

/// Folds every BatchNormalization whose input is a Conv output read by nothing else into
/// that Conv. Returns how many.
pub fn fold_batchnorms(g: &mut GraphProto) -> Result<usize, String> {
    let mut folded = 0;
    let mut i = 0;
    while i < g.node.len() {
        if g.node[i].op_type != "BatchNormalization" || g.node[i].input.len() != 5 {
            i += 1;
            continue;
        }
        let bn = g.node[i].clone();
        let x = &bn.input[0];
        let Some(conv_index) = producer(g, x) else {
            i += 1;
            continue;
        };
        let conv = g.node[conv_index].clone();
        let foldable = conv.op_type == "Conv"
            && consumers(g, x).len() == 1
            && !is_graph_output(g, x)
            && initializer(g, &conv.input[1]).is_some()
            && conv
                .input
                .get(2)
                .is_none_or(|b| b.is_empty() || initializer(g, b).is_some())
            && bn.input[1..].iter().all(|p| initializer(g, p).is_some());
        if !foldable {
            i += 1;
            continue;
        }
        let param = |k: usize| float_values(initializer(g, &bn.input[k]).expect("checked"));
        let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
        let eps = attr_f(&bn, "epsilon", 1e-5);
        let weight = initializer(g, &conv.input[1]).expect("checked");
        let w = float_values(weight)?;
        let out_channels = *weight.dims.first().ok_or("Conv weight without dims")? as usize;
        if [gamma.len(), beta.len(), mean.len(), var.len()] != [out_channels; 4] {
            return Err(format!(
                "BatchNormalization {} has parameters of another length than Conv {}'s {} \
                 output channels",
                bn.name, conv.name, out_channels
            ));
        }
        let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => float_values(initializer(g, b).expect("checked"))?,
            None => vec![0.0; out_channels],
        };
        let per_channel = w.len() / out_channels.max(1);
        let mut new_w = w.clone();
        let mut new_b = vec![0.0f32; out_channels];
        for c in 0..out_channels {
            // In f64: the folded weights are the FP32 rounding of the exact product.
            let factor = gamma[c] as f64 / (var[c] as f64 + eps as f64).sqrt();
            for v in &mut new_w[c * per_channel..(c + 1) * per_channel] {
                *v = (*v as f64 * factor) as f32;
            }
            new_b[c] = ((bias[c] as f64 - mean[c] as f64) * factor + beta[c] as f64) as f32;
        }
        let dims = weight.dims.clone();
        let w_name = format!("{}_folded", conv.input[1]);
        let b_name = format!("{}_folded_bias", conv.input[1]);
        for name in [&w_name, &b_name] {
            if let Some(k) = initializer_index(g, name) {
                g.initializer.remove(k);
            }
        }
        g.initializer.push(float_tensor(&w_name, &dims, &new_w));
        g.initializer
            .push(float_tensor(&b_name, &[out_channels as i64], &new_b));
        let node = &mut g.node[conv_index];
        node.input.truncate(1);
        node.input.push(w_name);
        node.input.push(b_name);
        node.output[0] = bn.output[0].clone();
        g.node.remove(i);
        folded += 1;
    }
    Ok(folded)
}

/// Rank of `value` when the graph makes it obvious (a Reshape to a constant shape, a
/// Flatten, a Gemm), else `None`.
fn known_rank(g: &GraphProto, value: &str) -> Option<usize> {
    let n = &g.node[producer(g, value)?];
    match n.op_type.as_str() {
        "Reshape" => initializer(g, n.input.get(1)?).map(|t| tensor_i64s(t).len()),
        "Flatten" | "Gemm" => Some(2),
        "Add" | "Relu" => {
            // Elementwise over a 2-D value and a vector stays 2-D.
            let ranks: Vec<Option<usize>> = n
                .input
                .iter()
                .map(|i| match initializer(g, i) {
                    Some(t) => Some(t.dims.len()),
                    None => known_rank(g, i),
                })
                .collect();
            let max = ranks.iter().copied().collect::<Option<Vec<_>>>()?;
            max.into_iter().max()
        }
        _ => None,
    }
}

/// Fuses `Add(MatMul(x, W), b)` into `Gemm(x, W, b)` when `x` is 2-D, `W` a `[K, N]`
/// initializer, `b` an initializer of `N` values (`[N]` or `[1, N]`) and the MatMul output
/// is read by the Add alone. Returns how many.
pub fn fuse_matmul_add(g: &mut GraphProto) -> Result<usize, String> {
    let mut fused = 0;
    let mut i = 0;
    while i < g.node.len() {
        let mm = g.node[i].clone();
        let weight = mm.input.get(1).and_then(|w| initializer(g, w));
        let candidate = mm.op_type == "MatMul"
            && weight.is_some_and(|w| w.dims.len() == 2)
            && known_rank(g, &mm.input[0]) == Some(2)
            && !is_graph_output(g, &mm.output[0]);
        let readers = consumers(g, &mm.output[0]);
        if !candidate || readers.len() != 1 {
            i += 1;
            continue;
        }
        let n_out = weight.expect("checked").dims[1];
        let add_index = readers[0];
        let add = g.node[add_index].clone();
        let bias_name = add.input.iter().find(|v| **v != mm.output[0]).cloned();
        let bias = bias_name.as_deref().and_then(|b| initializer(g, b));
        let bias_ok = add.op_type == "Add"
            && add.input.len() == 2
            && bias.is_some_and(|b| {
                b.data_type == DataType::FLOAT as i32
                    && b.dims.iter().product::<i64>() == n_out
                    && (b.dims == [n_out] || b.dims == [1, n_out])
            });
        if !bias_ok {
            i += 1;
            continue;
        }
        let bias = bias.expect("checked");
        let values = float_values(bias)?;
        let flat_name = format!("{}_vector", bias.name);
        if initializer_index(g, &flat_name).is_none() {
            g.initializer
                .push(float_tensor(&flat_name, &[n_out], &values));
        }
        let name = if mm.name.is_empty() {
            format!("Gemm_{}", add.output[0])
        } else {
            mm.name.clone()
        };
        let gemm = named_node(
            &name,
            "Gemm",
            &[&mm.input[0], &mm.input[1], &flat_name],
            &[&add.output[0]],
            vec![attr_int("transB", 0)],
        );
        g.node[i] = gemm;
        g.node.remove(add_index);
        fused += 1;
        i += 1;
    }
    Ok(fused)
}

/// Rewrites each Resize that gives `sizes` for some `axes` (burn-onnx's form) into the plain
/// 4-D `scales` form, using the input shape seen in calibration (`shapes`): ONNX Runtime
/// 1.31/1.32's NHWC layout transformer, which runs on quantized graphs at the "all"
/// optimization level, breaks on the `axes` form ("Number of elements of input 'sizes' (0)
/// does not match the number of axes"). Only exact ratios (output = ⌊input · scale⌋ for every
/// axis) are rewritten. Returns how many.
pub fn resize_sizes_to_scales(
    g: &mut GraphProto,
    shapes: &std::collections::HashMap<String, Vec<usize>>,
) -> usize {
    let mut rewritten = 0;
    let mut new_inits = Vec::new();
    for i in 0..g.node.len() {
        let n = &g.node[i];
        if n.op_type != "Resize" || n.input.len() != 4 {
            continue;
        }
        let Some(axes) = super::graph::attribute(n, "axes").map(|a| a.ints.clone()) else {
            continue;
        };
        let Some(sizes) = initializer(g, &n.input[3]).map(tensor_i64s) else {
            continue;
        };
        let Some(shape) = shapes.get(&n.input[0]) else {
            continue;
        };
        let rank = shape.len();
        if sizes.len() != axes.len() {
            continue;
        }
        let mut scales = vec![1.0f32; rank];
        let mut exact = true;
        for (&axis, &size) in axes.iter().zip(&sizes) {
            let axis = if axis < 0 { axis + rank as i64 } else { axis } as usize;
            if axis >= rank || shape[axis] == 0 {
                exact = false;
                break;
            }
            let scale = size as f32 / shape[axis] as f32;
            exact &= (shape[axis] as f32 * scale).floor() as i64 == size;
            scales[axis] = scale;
        }
        if !exact {
            continue;
        }
        let roi = format!("{}_empty_roi", n.name);
        let scales_name = format!("{}_scales", n.name);
        new_inits.push(float_tensor(&roi, &[0], &[]));
        new_inits.push(float_tensor(&scales_name, &[rank as i64], &scales));
        let n = &mut g.node[i];
        n.input.truncate(1);
        n.input.push(roi);
        n.input.push(scales_name);
        n.attribute.retain(|a| a.name != "axes");
        rewritten += 1;
    }
    g.initializer.extend(new_inits);
    remove_unused_initializers(g);
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_dims_copy_and_infer() {
        assert_eq!(reshape_dims(&[10], &[1, -1]).unwrap(), vec![1, 10]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1]).unwrap(), vec![2, 12]);
        assert!(reshape_dims(&[10], &[3, -1]).is_err());
        assert!(reshape_dims(&[10], &[3, 4]).is_err());
    }
}
