//! Torchvision-format ResNet-18 state dicts written from Rust (no Python, no torch):
//! SafeTensors by hand and torch's zip+pickle `.pth` format via a minimal pickle writer.

use std::io::Write;
use std::path::Path;

/// Tensor payload.
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One state-dict entry.
pub struct Entry {
    pub key: String,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// Deterministic value of element `i` of the `k`-th tensor.
pub fn value(k: usize, i: usize) -> f32 {
    ((i as f64 * 0.37 + k as f64 * 1.3).sin() * 0.1) as f32
}

/// torchvision `resnet18(num_classes)` state-dict keys and shapes, in torchvision's order
/// (including `num_batches_tracked`).
pub fn resnet18_keys(num_classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let bn = |keys: &mut Vec<(String, Vec<usize>)>, prefix: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{prefix}.{p}"), vec![c]));
        }
        keys.push((format!("{prefix}.num_batches_tracked"), vec![]));
    };
    keys.push(("conv1.weight".into(), vec![64, 3, 7, 7]));
    bn(&mut keys, "bn1", 64);
    let mut c_in = 64;
    for (layer, c) in [(1, 64), (2, 128), (3, 256), (4, 512)] {
        for block in 0..2 {
            let p = format!("layer{layer}.{block}");
            let cin = if block == 0 { c_in } else { c };
            keys.push((format!("{p}.conv1.weight"), vec![c, cin, 3, 3]));
            bn(&mut keys, &format!("{p}.bn1"), c);
            keys.push((format!("{p}.conv2.weight"), vec![c, c, 3, 3]));
            bn(&mut keys, &format!("{p}.bn2"), c);
            if block == 0 && layer > 1 {
                keys.push((format!("{p}.downsample.0.weight"), vec![c, cin, 1, 1]));
                bn(&mut keys, &format!("{p}.downsample.1"), c);
            }
        }
        c_in = c;
    }
    keys.push(("fc.weight".into(), vec![num_classes, 512]));
    keys.push(("fc.bias".into(), vec![num_classes]));
    keys
}

/// A full torchvision ResNet-18 state dict with values from [`value`]; running variances
/// are made positive.
pub fn resnet18_state_dict(num_classes: usize) -> Vec<Entry> {
    resnet18_keys(num_classes)
        .into_iter()
        .enumerate()
        .map(|(k, (key, shape))| {
            let n: usize = shape.iter().product();
            let values = if key.ends_with("num_batches_tracked") {
                Values::I64(vec![7])
            } else if key.ends_with("running_var") {
                Values::F32((0..n).map(|i| 1.0 + value(k, i).abs()).collect())
            } else {
                Values::F32((0..n).map(|i| value(k, i)).collect())
            };
            Entry { key, shape, values }
        })
        .collect()
}

fn bytes(values: &Values) -> Vec<u8> {
    match values {
        Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Writes `entries` as a SafeTensors file.
pub fn write_safetensors(path: &Path, entries: &[Entry]) {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let b = bytes(&e.values);
        let dtype = match e.values {
            Values::F32(_) => "F32",
            Values::I64(_) => "I64",
        };
        let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            e.key,
            shape.join(","),
            data.len(),
            data.len() + b.len()
        ));
        data.extend(b);
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.write_all(&data).unwrap();
}

/// Minimal protocol-2 pickle writer for a torch state dict.
struct Pickle(Vec<u8>);

impl Pickle {
    fn unicode(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
    }
    fn int(&mut self, v: usize) {
        self.0.push(b'J');
        self.0.extend((v as i32).to_le_bytes());
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
    }
    fn int_tuple(&mut self, values: &[usize]) {
        self.0.push(b'(');
        for &v in values {
            self.int(v);
        }
        self.0.push(b't');
    }
}

/// Writes `entries` in torch's zip `.pth` format (what `torch.save(state_dict)` writes).
pub fn write_pth(path: &Path, entries: &[Entry]) {
    let mut p = Pickle(vec![0x80, 2]);
    p.global("collections", "OrderedDict");
    p.0.extend([b')', b'R']); // OrderedDict()
    p.0.push(b'(');
    for (i, e) in entries.iter().enumerate() {
        p.unicode(&e.key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'(');
        // Persistent id: ('storage', torch.XStorage, key, 'cpu', numel).
        p.0.push(b'(');
        p.unicode("storage");
        let storage = match e.values {
            Values::F32(_) => "FloatStorage",
            Values::I64(_) => "LongStorage",
        };
        p.global("torch", storage);
        p.unicode(&i.to_string());
        p.unicode("cpu");
        p.int(e.shape.iter().product());
        p.0.extend([b't', b'Q']);
        p.int(0); // storage offset
        p.int_tuple(&e.shape);
        let mut stride = vec![1; e.shape.len()];
        for d in (0..e.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * e.shape[d + 1];
        }
        p.int_tuple(&stride);
        p.0.push(0x89); // requires_grad = False
        p.global("collections", "OrderedDict");
        p.0.extend([b')', b'R']); // backward hooks
        p.0.extend([b't', b'R']);
    }
    p.0.extend([b'u', b'.']);

    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options).unwrap();
    zip.write_all(&p.0).unwrap();
    zip.start_file("archive/byteorder", options).unwrap();
    zip.write_all(b"little").unwrap();
    for (i, e) in entries.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), options)
            .unwrap();
        zip.write_all(&bytes(&e.values)).unwrap();
    }
    zip.start_file("archive/version", options).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

/// Copies the first `len` bytes of `src` to `dst` (a truncated download).
pub fn truncate_copy(src: &Path, dst: &Path, len: usize) {
    let data = std::fs::read(src).unwrap();
    std::fs::write(dst, &data[..len.min(data.len())]).unwrap();
}
