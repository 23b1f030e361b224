//! Small reads and writes on an ONNX graph that the quantizer's passes share: initializer
//! values, who produces and who consumes a value, attributes, fresh names.

use std::collections::{HashMap, HashSet};

use defectkit_core::onnx::{
    tensor_proto::DataType, AttributeProto, GraphProto, NodeProto, TensorProto,
};

/// The float values of a FLOAT initializer (raw little-endian or `float_data`).
pub fn float_values(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != DataType::FLOAT as i32 {
        return Err(format!(
            "initializer {:?} is not FLOAT (data type {})",
            t.name, t.data_type
        ));
    }
    let count: i64 = t.dims.iter().product();
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if values.len() as i64 != count {
        return Err(format!(
            "initializer {:?} holds {} values for dims {:?}",
            t.name,
            values.len(),
            t.dims
        ));
    }
    Ok(values)
}

/// Index of the initializer named `name`.
pub fn initializer_index(g: &GraphProto, name: &str) -> Option<usize> {
    g.initializer.iter().position(|t| t.name == name)
}

/// The initializer named `name`.
pub fn initializer<'g>(g: &'g GraphProto, name: &str) -> Option<&'g TensorProto> {
    g.initializer.iter().find(|t| t.name == name)
}

/// Index of the node that produces `value`.
pub fn producer(g: &GraphProto, value: &str) -> Option<usize> {
    g.node
        .iter()
        .position(|n| n.output.iter().any(|o| o == value))
}

/// Indices of the nodes that read `value`.
pub fn consumers(g: &GraphProto, value: &str) -> Vec<usize> {
    g.node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.input.iter().any(|i| i == value))
        .map(|(i, _)| i)
        .collect()
}

/// Whether `value` is one of the graph's outputs.
pub fn is_graph_output(g: &GraphProto, value: &str) -> bool {
    g.output.iter().any(|o| o.name == value)
}

/// An INT attribute of `node`, or `default`.
pub fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.i)
        .unwrap_or(default)
}

/// A FLOAT attribute of `node`, or `default`.
pub fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.f)
        .unwrap_or(default)
}

/// Every value name the graph uses (inputs, outputs, initializers, node outputs).
pub fn value_names(g: &GraphProto) -> HashSet<String> {
    let mut names: HashSet<String> = g.input.iter().map(|v| v.name.clone()).collect();
    names.extend(g.output.iter().map(|v| v.name.clone()));
    names.extend(g.initializer.iter().map(|t| t.name.clone()));
    for n in &g.node {
        names.extend(n.output.iter().cloned());
        names.extend(n.input.iter().cloned());
    }
    names
}

/// Hands out names not used in the graph yet (`base`, `base_1`, …).
#[derive(Debug)]
pub struct Namer {
    taken: HashSet<String>,
}

impl Namer {
    /// Knows every name `g` uses (values and nodes).
    pub fn new(g: &GraphProto) -> Self {
        let mut taken = value_names(g);
        taken.extend(g.node.iter().map(|n| n.name.clone()));
        Self { taken }
    }

    /// A fresh name starting with `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// Drops initializers nothing reads any more (and their stale `graph.input` entries).
pub fn remove_unused_initializers(g: &mut GraphProto) {
    let used: HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(g.output.iter().map(|o| o.name.as_str()))
        .collect();
    let unused: HashSet<String> = g
        .initializer
        .iter()
        .filter(|t| !used.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    g.initializer.retain(|t| !unused.contains(&t.name));
    g.input.retain(|v| !unused.contains(&v.name));
}

/// Counts of each op type, for messages and reports.
pub fn op_counts(g: &GraphProto) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for n in &g.node {
        *counts.entry(n.op_type.clone()).or_default() += 1;
    }
    let mut out: Vec<_> = counts.into_iter().collect();
    out.sort();
    out
}

/// An attribute by name.
pub fn attribute<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
