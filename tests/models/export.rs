//! ONNX export with burn-onnx (static and dynamic batch), and the exported `features`
//! output against its metadata and Burn.

use defectkit::burn::prelude::*;
use defectkit::burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};
use defectkit::data::PreprocessSpec;
use defectkit::export::{export_network, Network};
use defectkit::models::*;
use defectkit::onnx::{self as onnxfile, ModelKind, ModelMetadata, Parity, Precision};
use defectkit::runtime::{OnnxModel, RuntimeOptions};

use crate::common::*;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn dynamic_batch() -> Vec<InputSpec> {
    vec![InputSpec::new(vec![
        AxisSpec::dynamic("batch"),
        AxisSpec::Static,
        AxisSpec::Static,
        AxisSpec::Static,
    ])]
}

#[test]
fn export_classifier() {
    let _rng = crate::common::rng_lock();
    let device = device();
    let model = ClassifierConfig::new(10)
        .with_hidden(Some(32))
        .with_dropout(0.2)
        .init(&device)
        .valid();
    let x = images(1, 64, &device);
    let before = values(&model.forward(x.clone()).logits);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("classifier.onnx");
    let onnx = OnnxExporter::new()
        // Export a `valid()` copy: the exporter moves the module to its capture device, and
        // BatchNorm running stats are shared between clones, so exporting `&model` or a
        // `clone()` leaves `model` unusable ("Cannot move a tensor from a capture device").
        .export(&model.valid(), x.clone(), |m: &Classifier, x: Tensor<4>| {
            let (out, patches) = m.forward_with_patches(x);
            (out.logits, out.embedding, patches)
        })
        .unwrap();
    onnx.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    eprintln!("classifier.onnx: {} bytes", bytes.len());
    for op in [
        "Conv",
        "BatchNormalization",
        "MaxPool",
        "Relu",
        "Add",
        "AveragePool",
        "Concat",
    ] {
        assert!(contains(&bytes, op), "{op}");
    }
    let proto = onnxfile::decode_model(&bytes, &path).unwrap();
    assert_eq!(onnxfile::output_names(&proto).len(), 3);

    let dynamic = OnnxExporter::new()
        .export_dynamic(
            &model.valid(),
            images(1, 64, &device),
            images(2, 64, &device),
            &dynamic_batch(),
            |m: &Classifier, x: Tensor<4>| {
                let out = m.forward(x);
                (out.logits, out.embedding)
            },
        )
        .unwrap();
    eprintln!("classifier dynamic: {} bytes", dynamic.as_bytes().len());
    assert!(contains(dynamic.as_bytes(), "batch"));

    // The original model still runs and gives the same logits.
    assert_eq!(values(&model.forward(x).logits), before);
}

#[test]
fn export_unet() {
    let _rng = crate::common::rng_lock();
    let device = device();
    for (upsample, skip) in [
        (UpsampleMode::Nearest, false),
        (UpsampleMode::Bilinear, true),
    ] {
        let model = UNetConfig::new(64)
            .with_base_width(8)
            .with_depth(3)
            .with_skip_connections(skip)
            .with_upsample(upsample)
            .init(&device)
            .valid();
        let forward = |m: &UNet, x: Tensor<4>| {
            let (out, patches) = m.forward_with_patches(x);
            (out.reconstruction, out.embedding, patches)
        };
        let onnx = OnnxExporter::new()
            .export(&model.valid(), images(1, 64, &device), forward)
            .unwrap();
        let bytes = onnx.as_bytes();
        eprintln!("unet {upsample:?} skip={skip}: {} bytes", bytes.len());
        assert!(contains(bytes, "Resize"));
        assert!(!contains(bytes, "ConvTranspose"));
        // The features output: encoder.1 pooled 2×2 and concatenated with encoder.2.
        assert!(contains(bytes, "AveragePool"));
        assert!(contains(bytes, "Concat"));
        // Dynamic batch fails for the U-Net: the latent reshape [B, C·h·w] → [B, C, h, w]
        // introduces two static dims the paired-trace resolver cannot attribute ("multiple
        // element-count-derived dimensions remain"); export a fixed batch instead.
        let dynamic = OnnxExporter::new().export_dynamic(
            &model.valid(),
            images(1, 64, &device),
            images(3, 64, &device),
            &dynamic_batch(),
            forward,
        );
        match dynamic {
            Ok(m) => eprintln!("unet dynamic: {} bytes", m.as_bytes().len()),
            Err(e) => eprintln!("unet dynamic export failed: {e}"),
        }
        let batch4 = OnnxExporter::new()
            .export(&model.valid(), images(4, 64, &device), forward)
            .unwrap();
        eprintln!("unet static batch 4: {} bytes", batch4.as_bytes().len());
    }
}

/// Metadata for an export of `kind` at `side` px (what `export_run` fills from a run dir).
fn metadata(kind: ModelKind, side: usize) -> ModelMetadata {
    ModelMetadata {
        kind,
        precision: Precision::Fp32,
        preprocess: PreprocessSpec::imagenet(side as u32),
        classes: vec!["a".into(), "b".into(), "c".into()],
        input_shape: [3, side, side],
        embedding_dim: 0,
        outputs: vec![],
        run_id: "test".into(),
        config_hash: "0".repeat(64),
        defectkit_version: env!("CARGO_PKG_VERSION").into(),
        checkpoint: "none".into(),
        opset: 0,
        data_split: None,
        features: None,
    }
}

/// Seeded inputs in [-2, 2] (the export policy's probe images).
fn probe(side: usize, batch: usize) -> Vec<f32> {
    defectkit::onnx::parity::probe_input([3, side, side], batch, 7)
}

#[test]
fn exported_features_have_the_documented_shape_and_match_burn() {
    let _rng = crate::common::rng_lock();
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    // (name, network, side, [channels, cells], stride, [(layer, channels, resample)])
    let pooled = "avg_pool 2x2";
    let cases = [
        (
            "A width 8, 32 px",
            Network::new(
                ModelKind::CnnScratch,
                ClassifierConfig::new(3).with_width(8).init(&device),
            ),
            32,
            [24, 4],
            8,
            vec![("stem.layer1", 8, pooled), ("stem.layer2", 16, "none")],
        ),
        (
            // conv2_x is 9×9 at 36 px: the average pool's last window is a single row/column.
            "B width 16 + hidden, 36 px",
            Network::new(
                ModelKind::CnnDistilled,
                ClassifierConfig::new(3)
                    .with_width(16)
                    .with_hidden(Some(8))
                    .init(&device),
            ),
            36,
            [48, 5],
            8,
            vec![("stem.layer1", 16, pooled), ("stem.layer2", 32, "none")],
        ),
        (
            "C depth 4, base 16, 64 px (A's geometry)",
            Network::new(
                ModelKind::UnetAe,
                UNetConfig::new(64)
                    .with_depth(4)
                    .with_base_width(16)
                    .with_latent_dim(8)
                    .init(&device),
            ),
            64,
            [192, 8],
            8,
            vec![("encoder.2", 64, pooled), ("encoder.3", 128, "none")],
        ),
        (
            "C depth 1, skips, 32 px",
            Network::new(
                ModelKind::UnetAe,
                UNetConfig::new(32)
                    .with_depth(1)
                    .with_base_width(4)
                    .with_latent_dim(8)
                    .with_skip_connections(true)
                    .init(&device),
            ),
            32,
            [4, 32],
            1,
            vec![("encoder.0", 4, "none")],
        ),
        (
            "teacher, 32 px",
            Network::new(
                ModelKind::Teacher,
                ResNet18Config::new().with_num_classes(3).init(&device),
            ),
            32,
            [192, 4],
            8,
            vec![("stem.layer1", 64, pooled), ("stem.layer2", 128, "none")],
        ),
    ];
    for (name, network, side, [channels, cells], stride, sources) in cases {
        let (proto, meta) = export_network(&network, metadata(network.kind(), side), &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let primary = network.kind().primary_output();
        assert_eq!(
            onnxfile::output_names(&proto),
            [primary, "embedding", "features"],
            "{name}"
        );
        assert_eq!(meta.outputs, [primary, "embedding", "features"], "{name}");
        let spec = meta.features.clone().expect("features metadata");
        assert_eq!(
            [spec.channels, spec.height, spec.width, spec.stride],
            [channels, cells, cells, stride],
            "{name}"
        );
        let got: Vec<(&str, usize, &str)> = spec
            .sources
            .iter()
            .map(|s| (s.layer.as_str(), s.channels, s.resample.as_str()))
            .collect();
        assert_eq!(got, sources, "{name}");
        assert!(proto.doc_string.contains("features [batch"), "{name}");
        let output = proto
            .graph
            .as_ref()
            .unwrap()
            .output
            .iter()
            .find(|v| v.name == "features")
            .unwrap();
        assert_eq!(
            onnxfile::value_dims(output),
            [
                None,
                Some(channels as i64),
                Some(cells as i64),
                Some(cells as i64)
            ],
            "{name}: batch must be symbolic"
        );

        let path = dir
            .path()
            .join(format!("{}-{side}.onnx", network.kind().as_str()));
        onnxfile::write_model(&path, &proto).unwrap();
        let mut model = OnnxModel::load(&path, &RuntimeOptions::default()).unwrap();
        assert_eq!(model.metadata, meta, "{name}");
        assert_eq!(model.request_features().unwrap(), spec, "{name}");
        let batch = 2;
        let input = probe(side, batch);
        // `run` checks ONNX Runtime's features against the documented [2, C, h, w].
        let out = model.run(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ort_features = out.features.expect("features requested");
        assert_eq!(
            ort_features.len(),
            batch * channels * cells * cells,
            "{name}"
        );

        let x = Tensor::<4>::from_data(TensorData::new(input, [batch, 3, side, side]), &device);
        let burn = network.outputs(x);
        assert_eq!(
            burn.features_shape,
            [batch, channels, cells, cells],
            "{name}"
        );
        for (what, reference, got) in [
            (primary, &burn.primary, &out.primary),
            ("embedding", &burn.embedding, &out.embedding),
            ("features", &burn.features, &ort_features),
        ] {
            let p = Parity::of(reference, got);
            eprintln!(
                "{name} {what}: max |ORT − Burn| {:.2e} of {:.2}",
                p.max_abs_diff, p.max_abs_value
            );
            assert!(p.is_faithful(), "{name} {what}: {p:?}");
        }
    }
}
