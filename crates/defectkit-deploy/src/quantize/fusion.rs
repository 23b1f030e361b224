//! The fusion check: a QDQ graph is only fast if ONNX Runtime turns each
//! DequantizeLinear → op → QuantizeLinear group into one int8 kernel (QLinearConv, QGemm,
//! QLinearAdd, …). Left unfused, the op runs in float between a dequantize and a quantize and
//! the int8 model is *slower* than FP32. We ask ONNX Runtime for its optimized graph (all
//! optimizations, CPU, the file it saves) and name every quantized op that stayed float.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use defectkit_core::onnx::{read_model, GraphProto};

use super::qdq::FUSED_KINDS;
use super::FusionReport;
use crate::runtime::{session_from_bytes, ExecutionProvider, RuntimeError, RuntimeOptions};

/// Whether an optimized-graph op is an int8 kernel.
pub fn is_int8_kernel(op: &str) -> bool {
    op.starts_with("QLinear")
        || matches!(
            op,
            "QGemm" | "MatMulIntegerToFloat" | "ConvInteger" | "MatMulInteger" | "QAttention"
        )
}

/// Float ops of the kinds the quantizer quantizes, as ONNX Runtime names them after its own
/// float fusions (FusedConv = Conv + activation, the NCHWc layout's Conv, FusedGemm, …).
fn float_kind(op: &str) -> Option<&'static str> {
    let base = match op {
        "FusedConv" => "Conv",
        "FusedGemm" => "Gemm",
        "FusedMatMul" => "MatMul",
        other => other,
    };
    FUSED_KINDS.iter().copied().find(|k| *k == base)
}

/// Counts int8 kernels in `optimized` and lists the float ops of quantized kinds that remain,
/// except the nodes left in FP32 on purpose: named in `kept_float`, or writing one of
/// `kept_outputs` (ONNX Runtime renames the float Convs it moves to its NCHWc layout
/// `<output>_nchwc`, and the layout's Conv writes a new value).
pub fn inspect(
    optimized: &GraphProto,
    kept_float: &HashSet<String>,
    kept_outputs: &HashSet<String>,
) -> FusionReport {
    let mut kernels: BTreeMap<String, usize> = BTreeMap::new();
    let mut unfused = Vec::new();
    for n in &optimized.node {
        if is_int8_kernel(&n.op_type) {
            *kernels.entry(n.op_type.clone()).or_default() += 1;
        } else if let Some(kind) = float_kind(&n.op_type) {
            let kept = kept_float.contains(&n.name)
                || n.output.iter().any(|o| kept_outputs.contains(o))
                || n.name
                    .strip_suffix("_nchwc")
                    .is_some_and(|base| kept_outputs.contains(base));
            if !kept {
                unfused.push(format!("{} ({kind})", n.name));
            }
        }
    }
    FusionReport {
        int8_kernels: kernels.into_iter().collect(),
        unfused,
    }
}

/// Builds an ONNX Runtime CPU session over the quantized `bytes` with every optimization,
/// saves the optimized graph into `scratch_dir` and inspects it.
pub fn check(
    bytes: &[u8],
    kept_float: &HashSet<String>,
    kept_outputs: &HashSet<String>,
    runtime: &RuntimeOptions,
    scratch_dir: &Path,
) -> Result<FusionReport, RuntimeError> {
    let optimized = scratch_dir.join("optimized.onnx");
    let cpu = RuntimeOptions {
        ep: ExecutionProvider::Cpu,
        threads: Some(1),
        library: runtime.library.clone(),
    };
    let session = session_from_bytes(bytes, &cpu, Some(&optimized))?;
    drop(session);
    let model = read_model(&optimized)?;
    Ok(inspect(&model.graph, kept_float, kept_outputs))
}
