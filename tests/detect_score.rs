//! `defectkit detect` and `defectkit score` end to end through the binary, on a small
//! synthetic set embedded with tiny ONNX models (`onnx::testing`): the detector folder, its
//! refusals, the scored ONNX bundle against onnxruntime-Python and `score`, and `score` on a
//! messy folder (corrupt, truncated, empty, grayscale, 16-bit, RGBA, non-image files), strict
//! mode and shards.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use defectkit::data::image_io::load_rgb8;
use defectkit::data::synth::{generate, SynthOptions};
use defectkit::onnx::testing::TinyModel;
use defectkit::onnx::{self as onnxfile, ModelKind};

use common::run_cli;

const SIDE: usize = 32;
const CLASSES: [&str; 3] = ["bottle", "carpet", "screw"];

/// A small synthetic set shared by the tests of this file.
fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("defectkit-detect-test-{}", std::process::id()));
        let opts = SynthOptions {
            seed: 5,
            image_size: 48,
            train_good: 15,
            test_good: 4,
            test_defect_per_type: 2,
            classes: Some(CLASSES.iter().map(|s| s.to_string()).collect()),
            force: true,
        };
        generate(&opts, &dir, false).expect("generate data");
        dir
    })
}

/// A tiny model of `kind` written to `dir/model.onnx`.
fn tiny(dir: &Path, kind: ModelKind) -> PathBuf {
    let t = if kind.is_autoencoder() {
        TinyModel::autoencoder(SIDE, &CLASSES, 4)
    } else {
        TinyModel::classifier(kind, SIDE, &CLASSES, 4)
    };
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("model.onnx");
    onnxfile::write_model(&path, &t.model).unwrap();
    path
}

fn ok(cwd: &Path, args: &[&str]) -> (String, String) {
    let (success, out, err) = run_cli(cwd, args);
    assert!(success, "defectkit {args:?} failed:\n{out}\n{err}");
    (out, err)
}

fn fails(cwd: &Path, args: &[&str]) -> String {
    let (success, out, err) = run_cli(cwd, args);
    assert!(!success, "defectkit {args:?} should fail:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Embeds the data set with `model` into `out`.
fn embed(cwd: &Path, model: &Path, out: &Path) {
    let root = format!("data.root={}", dataset().display());
    ok(
        cwd,
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--recon-pool",
            "4",
            &root,
        ],
    );
}

/// CSV rows (header dropped) as field vectors (no quoted commas in these paths).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(defectkit::score::CSV_HEADER));
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn detect_writes_a_self_describing_folder_and_refuses_leaks() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let model = tiny(&tmp.path().join("a"), ModelKind::CnnScratch);
    let h5 = tmp.path().join("a/embeddings.h5");
    embed(&cwd, &model, &h5);

    let out = tmp.path().join("det");
    let (stdout, stderr) = ok(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "detector=euclidean",
        ],
    );
    assert!(stdout.contains("mean image AUROC"), "{stdout}");
    // 15 train good at val_fraction 0.2: 3 val images per class, too few for the 95th
    // percentile: the maximum, with one warning naming the classes.
    assert!(
        stderr.contains("3 class(es) have fewer good val images than the 95th percentile needs (20): bottle (3), carpet (3), screw (3)."),
        "{stderr}"
    );
    for f in [
        "detector.json",
        "detector.h5",
        "metrics.json",
        "metrics.md",
        "test_scores.csv",
        "roc.png",
        "scores.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let det: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("detector.json")).unwrap()).unwrap();
    assert_eq!(det["method"], "euclidean");
    assert_eq!(det["config"]["threshold_split"], "val");
    assert_eq!(det["data"]["split"]["val_fraction"], 0.2);
    assert_eq!(
        det["model"]["sha256"].as_str().unwrap(),
        defectkit::embed::sha256_file(&model).unwrap()
    );

    // The thresholds by hand: the max over each class's val good images of the distance to
    // the mean of its train good embeddings.
    let store = defectkit::store::EmbeddingStore::open(&h5).unwrap();
    let (train, val) = (store.split("train").unwrap(), store.split("val").unwrap());
    let d = train.dim;
    for (i, class) in CLASSES.iter().enumerate() {
        let rows = |r: &defectkit::store::SplitRecords| -> Vec<Vec<f64>> {
            (0..r.len())
                .filter(|&k| r.class[k] == *class && r.label[k] == 0)
                .map(|k| {
                    r.embeddings[k * d..(k + 1) * d]
                        .iter()
                        .map(|&v| v as f64)
                        .collect()
                })
                .collect()
        };
        let fit = rows(train);
        let mean: Vec<f64> = (0..d)
            .map(|j| fit.iter().map(|r| r[j]).sum::<f64>() / fit.len() as f64)
            .collect();
        let max = rows(val)
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(f64::NEG_INFINITY, f64::max);
        let got = det["classes"][i]["threshold"]["value"].as_f64().unwrap();
        assert_eq!(det["classes"][i]["name"], *class);
        assert!(
            (got - max).abs() <= 1e-9 * max.abs(),
            "{class}: {got} vs {max}"
        );
        assert_eq!(det["classes"][i]["threshold"]["used_maximum"], true);
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["per_class"].as_array().unwrap().len(), 3);
    assert!(metrics["mean"]["auroc"].is_number());
    let md = std::fs::read_to_string(out.join("metrics.md")).unwrap();
    assert!(md.contains("| **mean** |") && md.contains("oracle"), "{md}");

    // Refusals: fitting and thresholding on the same images; recon on a classifier; a typo.
    let err = fails(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "detector.threshold_split=train",
        ],
    );
    assert!(err.contains("not fitted on"), "{err}");
    let err = fails(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "detector.threshold_split=test",
        ],
    );
    assert!(err.contains("without test"), "{err}");
    let err = fails(&cwd, &["detect", h5.to_str().unwrap(), "detector=recon"]);
    assert!(err.contains("autoencoder"), "{err}");
    let err = fails(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "detector=knn",
            "detector.k=50",
        ],
    );
    assert!(err.contains("at least 50 fit images"), "{err}");
    let err = fails(
        &cwd,
        &["detect", h5.to_str().unwrap(), "detector.percentile=101"],
    );
    assert!(err.contains("percentile"), "{err}");
    let err = fails(
        &cwd,
        &["detect", tmp.path().join("nope.h5").to_str().unwrap()],
    );
    assert!(err.contains("nope.h5"), "{err}");

    // Embedded with another val split than the model's training run: refused.
    let meta_model = tmp.path().join("split/model.onnx");
    let mut t = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, 4);
    t.metadata.data_split = Some(defectkit::onnx::DataSplit {
        val_fraction: 0.3,
        split_seed: 0,
    });
    onnxfile::set_metadata_prop(&mut t.model, onnxfile::METADATA_KEY, &t.metadata.to_json());
    std::fs::create_dir_all(meta_model.parent().unwrap()).unwrap();
    onnxfile::write_model(&meta_model, &t.model).unwrap();
    let split_h5 = tmp.path().join("split/embeddings.h5");
    embed(&cwd, &meta_model, &split_h5);
    let err = fails(&cwd, &["detect", split_h5.to_str().unwrap()]);
    assert!(err.contains("data.val_fraction=0.3"), "{err}");

    // Compare: one table for two files × two methods.
    let cmp = tmp.path().join("cmp");
    let (stdout, _) = ok(
        &cwd,
        &[
            "detect",
            "--compare",
            "--methods",
            "mahalanobis,knn",
            "--out",
            cmp.to_str().unwrap(),
            h5.to_str().unwrap(),
            h5.to_str().unwrap(),
        ],
    );
    assert_eq!(stdout.matches("| a | cnn_scratch |").count(), 4, "{stdout}");
    let csv = std::fs::read_to_string(cmp.join("comparison.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(cmp.join("comparison.png").is_file());
}

/// The images `score` reads, preprocessed as the pipeline does, flat `[n, 3, s, s]`.
fn preprocessed(model: &Path, files: &[PathBuf]) -> Vec<f32> {
    let proto = onnxfile::read_model(model).unwrap();
    let meta = defectkit::onnx::ModelMetadata::from_json(
        onnxfile::metadata_prop(&proto, onnxfile::METADATA_KEY).unwrap(),
    )
    .unwrap();
    let spec = meta.preprocess;
    let per = 3 * SIDE * SIDE;
    let mut out = Vec::new();
    for f in files {
        let mut v = vec![0.0f32; per];
        spec.normalize_into(&spec.prepare(&load_rgb8(f).unwrap()), &mut v)
            .unwrap();
        out.extend(v);
    }
    out
}

#[test]
fn the_scored_bundle_agrees_with_score_and_passes_the_onnx_checker() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    // Test images of every class, sorted as `score` sorts them.
    let mut files: Vec<PathBuf> = CLASSES
        .iter()
        .flat_map(|c| defectkit::score::collect_files(&[dataset().join(c).join("test")]).unwrap())
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut expected: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for (kind, method, extra) in [
        (ModelKind::CnnDistilled, "mahalanobis", ""),
        (ModelKind::Teacher, "knn", "detector.k=2"),
        (ModelKind::UnetAe, "mahalanobis", ""),
        (ModelKind::UnetAe, "recon", "detector.pool=4"),
    ] {
        let name = format!("{}_{method}", kind.as_str());
        let dir = tmp.path().join(&name);
        let model = tiny(&dir, kind);
        let h5 = dir.join("embeddings.h5");
        embed(&cwd, &model, &h5);
        let out = dir.join("det");
        let method_arg = format!("detector={method}");
        let mut args = vec![
            "detect",
            h5.to_str().unwrap(),
            "--bundle",
            "--no-plots",
            "--out",
            out.to_str().unwrap(),
            &method_arg,
        ];
        if !extra.is_empty() {
            args.push(extra);
        }
        ok(&cwd, &args);
        let scored = out.join("model.scored.onnx");
        assert!(scored.is_file(), "{name}: no bundle");
        let csv = dir.join("scores.csv");
        let mut args: Vec<String> = vec!["score".into()];
        args.extend(
            CLASSES
                .iter()
                .map(|c| dataset().join(c).join("test").display().to_string()),
        );
        args.extend(
            [
                "--model",
                model.to_str().unwrap(),
                "--detector",
                out.join("detector.json").to_str().unwrap(),
                "--out",
                csv.to_str().unwrap(),
                "--batch-size",
                "5",
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&cwd, &refs);
        let rows = csv_rows(&std::fs::read_to_string(&csv).unwrap());
        assert_eq!(rows.len(), files.len(), "{name}");
        for (row, f) in rows.iter().zip(&files) {
            assert_eq!(row[0], f.display().to_string(), "{name}: order");
            assert!(row[5].is_empty(), "{name}: {row:?}");
        }
        expected.insert(name.clone(), rows);
        cases.push(serde_json::json!({
            "name": name,
            "model": scored,
            "input": preprocessed(&model, &files),
            "shape": [files.len(), 3, SIDE, SIDE],
        }));
    }
    let Some(py) = common::peer_python() else {
        return;
    };
    let cases_path = tmp.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let out = Command::new(py)
        .arg(common::repo_root().join("tests/peers/scoring_peer.py"))
        .arg(&cases_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for r in results {
        let name = r["name"].as_str().unwrap();
        let rows = &expected[name];
        let v = &r["values"];
        for (i, row) in rows.iter().enumerate() {
            let ours: f64 = row[2].parse().unwrap();
            let theirs = v["score"][i].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-4 * ours.abs().max(1e-6),
                "{name} image {i}: score {ours} (defectkit score) vs {theirs} (onnxruntime)"
            );
            let class = &CLASSES[v["class_index"][i].as_u64().unwrap() as usize];
            assert_eq!(row[1], *class, "{name} image {i}: class");
            let t: f64 = row[3].parse().unwrap();
            assert!((t - v["threshold"][i].as_f64().unwrap()).abs() <= 1e-6 * t.abs());
        }
        let meta = &r["metadata"];
        assert!(meta["defectkit.detector"]
            .as_str()
            .unwrap()
            .contains("\"format\""));
    }
}

#[test]
fn cluster_writes_its_table_and_plots_and_refuses_nonsense() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let (_, det) = fitted_classifier(&cwd, tmp.path());
    let h5 = tmp.path().join("m/embeddings.h5");
    let out = tmp.path().join("cl");
    let detector = det.join("detector.json");
    let args = [
        "cluster",
        h5.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--detector",
        detector.to_str().unwrap(),
        "cluster.dbscan.min_samples=3",
    ];
    let (stdout, stderr) = ok(&cwd, &args);
    assert!(stdout.contains("| all | tsne |"), "{stdout}");
    assert!(stdout.contains("detector F1"), "{stdout}");
    // 3 classes × 14 test images: t-SNE's perplexity is lowered, once, with the classes named.
    assert_eq!(
        stderr.matches("perplexity 30 lowered").count(),
        1,
        "{stderr}"
    );
    for f in [
        "cluster.md",
        "cluster.csv",
        "cluster.json",
        "pca_variance.png",
        "kdistance_pca.png",
        "all_tsne_dbscan.png",
        "all_pca2_truth.png",
        "class00_bottle_tsne_truth.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cluster.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4 * 3, "all + 3 classes, 3 spaces each");
    for r in rows {
        let n = r["n"].as_u64().unwrap();
        let c = &r["confusion"];
        let total: u64 = ["tp", "fp", "tn", "fn"]
            .iter()
            .map(|k| c[k].as_u64().unwrap())
            .sum();
        assert_eq!(total, n, "{r}");
        assert_eq!(
            c["tp"].as_u64().unwrap() + c["fp"].as_u64().unwrap(),
            r["noise"].as_u64().unwrap()
        );
    }
    // The same input and seed give the same table.
    let first = std::fs::read_to_string(out.join("cluster.md")).unwrap();
    ok(&cwd, &args);
    assert_eq!(
        std::fs::read_to_string(out.join("cluster.md")).unwrap(),
        first
    );

    // Nonsense is refused, naming the key.
    let err = fails(
        &cwd,
        &["cluster", h5.to_str().unwrap(), "cluster.fit_split=test"],
    );
    assert!(err.contains("never on test"), "{err}");
    let err = fails(
        &cwd,
        &["cluster", h5.to_str().unwrap(), "cluster.dbscan.eps=-1"],
    );
    assert!(err.contains("eps"), "{err}");
    let err = fails(
        &cwd,
        &["cluster", h5.to_str().unwrap(), "--classes", "unicorn"],
    );
    assert!(err.contains("unicorn"), "{err}");
    let err = fails(&cwd, &["cluster", h5.to_str().unwrap(), "--split", "train"]);
    assert!(
        err.contains("other images than the ones clustered"),
        "{err}"
    );
    // One class: only it is analysed; its clusters are compared with its defect types.
    let one = tmp.path().join("one");
    ok(
        &cwd,
        &[
            "cluster",
            h5.to_str().unwrap(),
            "--classes",
            "screw",
            "--out",
            one.to_str().unwrap(),
            "--no-plots",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("cluster.json")).unwrap()).unwrap();
    assert!(report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["agreement_with"] == "defect_type"));
    let err = fails(&cwd, &["cluster"]);
    assert!(err.contains("one embeddings file"), "{err}");
}

/// A tiny classifier under `dir/m`, embedded, with the default detector fitted in `dir/det`.
fn fitted_classifier(cwd: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let model = tiny(&dir.join("m"), ModelKind::CnnScratch);
    let h5 = dir.join("m/embeddings.h5");
    embed(cwd, &model, &h5);
    let det = dir.join("det");
    ok(
        cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "--no-plots",
            "--out",
            det.to_str().unwrap(),
        ],
    );
    (model, det)
}

/// Writes `img` as PNG at `path`.
fn save(path: &Path, img: &image::DynamicImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

#[test]
fn score_survives_a_messy_folder_and_shards_concatenate_to_the_whole() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let (model, det) = fitted_classifier(&cwd, tmp.path());
    let detector = det.join("detector.json");

    // The folder: good images, nested; other formats; broken files; a hidden file.
    let line = tmp.path().join("line");
    let good = dataset().join("bottle/test/good");
    let goods = defectkit::score::collect_files(&[good]).unwrap();
    for (i, g) in goods.iter().enumerate() {
        let to = line
            .join(if i % 2 == 0 { "a" } else { "b/c" })
            .join(format!("g{i}.png"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(g, &to).unwrap();
    }
    let rgb = image::open(&goods[0]).unwrap();
    save(
        &line.join("formats/gray.png"),
        &image::DynamicImage::ImageLuma8(rgb.to_luma8()),
    );
    save(
        &line.join("formats/deep.png"),
        &image::DynamicImage::ImageRgb16(rgb.to_rgb16()),
    );
    save(
        &line.join("formats/alpha.png"),
        &image::DynamicImage::ImageRgba8(rgb.to_rgba8()),
    );
    save(
        &line.join("formats/big.png"),
        &rgb.resize_exact(97, 61, image::imageops::FilterType::Triangle),
    );
    rgb.save(line.join("formats/photo.jpg")).unwrap();
    let bytes = std::fs::read(&goods[0]).unwrap();
    std::fs::create_dir_all(line.join("broken")).unwrap();
    std::fs::write(line.join("broken/truncated.png"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(line.join("broken/zero.png"), b"").unwrap();
    std::fs::write(
        line.join("broken/corrupt.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    std::fs::write(line.join("notes.txt"), b"shift 2: camera cleaned").unwrap();
    std::fs::write(line.join(".DS_Store"), b"\0\0").unwrap();
    let n_good = goods.len() + 5;
    let n_bad = 4;

    let base = |out: &str| -> Vec<String> {
        [
            "score",
            line.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--detector",
            detector.to_str().unwrap(),
            "--batch-size",
            "3",
            "--out",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |args: &[String]| run_cli(&cwd, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let all = tmp.path().join("all.csv");
    let (success, stdout, stderr) = run(&base(all.to_str().unwrap()));
    assert!(success, "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stdout.contains(&format!("scored {n_good} of {} files", n_good + n_bad)),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{n_bad} not scored")), "{stdout}");
    let rows = csv_rows(&std::fs::read_to_string(&all).unwrap());
    assert_eq!(
        rows.len(),
        n_good + n_bad,
        "hidden files are skipped: {rows:?}"
    );
    let paths: Vec<PathBuf> = rows.iter().map(|r| PathBuf::from(&r[0])).collect();
    let sorted = {
        let mut p = paths.clone();
        p.sort();
        p
    };
    assert_eq!(paths, sorted, "rows in path order");
    for row in &rows {
        let broken = row[0].contains("/broken/") || row[0].ends_with("notes.txt");
        assert_eq!(row[5].is_empty(), !broken, "{row:?}");
        if !broken {
            // auto: the tiny classifier's (arbitrary) predicted class.
            assert!(CLASSES.contains(&row[1].as_str()), "{row:?}");
            assert!(row[2].parse::<f64>().unwrap().is_finite());
            assert!(row[4] == "0" || row[4] == "1");
        }
    }
    // The RGBA, 16-bit and grayscale copies of one image score as the image itself does
    // (alpha dropped; 16 → 8 bit; gray replicated to 3 channels may differ from RGB).
    let score_of = |name: &str| -> f64 {
        rows.iter().find(|r| r[0].ends_with(name)).unwrap()[2]
            .parse()
            .unwrap()
    };
    assert!((score_of("formats/alpha.png") - score_of("a/g0.png")).abs() < 1e-9);
    assert!((score_of("formats/deep.png") - score_of("a/g0.png")).abs() < 1e-4);

    // JSON Lines, same rows.
    let jsonl = tmp.path().join("all.jsonl");
    let (success, _, stderr) = run(&base(jsonl.to_str().unwrap()));
    assert!(success, "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    assert!(lines
        .iter()
        .any(|l| l["error"].is_string() && l["score"].is_null()));

    // Shards 0/3, 1/3, 2/3 concatenate to the whole, row for row.
    let mut concatenated = Vec::new();
    for i in 0..3 {
        let part = tmp.path().join(format!("part{i}.csv"));
        let mut args = base(part.to_str().unwrap());
        args.extend(["--shard".to_string(), format!("{i}/3")]);
        let (success, _, stderr) = run(&args);
        assert!(success, "{stderr}");
        concatenated.extend(csv_rows(&std::fs::read_to_string(&part).unwrap()));
    }
    assert_eq!(concatenated, rows);

    // Strict: the first unreadable file is fatal, named, and no output is left behind.
    let strict = tmp.path().join("strict.csv");
    let mut args = base(strict.to_str().unwrap());
    args.push("--strict".into());
    let (success, _, stderr) = run(&args);
    assert!(!success && !stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("strict") && stderr.contains("broken"),
        "{stderr}"
    );
    assert!(!strict.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp"))
            .count(),
        0
    );

    // Stdout.
    let (success, stdout, _) = run(&base("-"));
    assert!(success);
    assert_eq!(csv_rows(&stdout), rows);

    // Clear errors: a missing folder, another model than the detector's, a bad shard.
    let score_fails = |input: &Path, model: &Path, detector: &Path, extra: &[&str]| -> String {
        let mut args = vec![
            "score",
            input.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--detector",
            detector.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        fails(&cwd, &args)
    };
    let err = score_fails(Path::new("/nonexistent/line"), &model, &detector, &[]);
    assert!(err.contains("/nonexistent/line"), "{err}");
    let other = tiny(&tmp.path().join("other"), ModelKind::UnetAe);
    let err = score_fails(&line, &other, &detector, &[]);
    assert!(err.contains("another model"), "{err}");
    let err = score_fails(&line, &model, &detector, &["--shard", "3/3"]);
    assert!(err.contains("I/N"), "{err}");

    // A detector.json edited by hand (a class removed) no longer matches its arrays.
    let mut edited: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&detector).unwrap()).unwrap();
    edited["classes"].as_array_mut().unwrap().remove(0);
    let edited_path = det.join("edited.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    let err = score_fails(&line, &model, &edited_path, &[]);
    assert!(err.contains("edited"), "{err}");
}

/// An embeddings file that holds what `embed` never writes (a NaN embedding) is refused by
/// `detect`, naming the file, the field and the image, and nothing is written; a healthy
/// file beside it is fitted, and a dead run's leftover folder there is cleared first.
#[test]
fn detect_refuses_a_store_with_a_nan_embedding_naming_the_image() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let model = tiny(&tmp.path().join("m"), ModelKind::CnnScratch);
    let good = tmp.path().join("m/embeddings.h5");
    embed(&cwd, &model, &good);
    let mut store = defectkit::store::EmbeddingStore::open(&good).unwrap();
    let val = store.splits.get_mut("val").unwrap();
    let victim = val.path[1].clone();
    val.embeddings[val.dim + 2] = f32::NAN;
    let bad_dir = tmp.path().join("bad");
    let bad = bad_dir.join("embeddings.h5");
    store.write(&bad).unwrap();
    let err = fails(&cwd, &["detect", bad.to_str().unwrap(), "--no-plots"]);
    assert!(err.contains(bad.to_str().unwrap()), "{err}");
    assert!(
        err.contains(r#"split "val" embeddings is invalid"#),
        "{err}"
    );
    assert!(err.contains(&victim), "the image is not named: {err}");
    assert!(!bad_dir.join("detect").exists(), "output written: {err}");

    let leftover = tmp.path().join("m/detect/.mahalanobis.tmp-99999999");
    std::fs::create_dir_all(leftover.join("half")).unwrap();
    let (_, err) = ok(&cwd, &["detect", good.to_str().unwrap(), "--no-plots"]);
    assert!(!leftover.exists(), "{err}");
    assert!(err.contains("no longer exists"), "{err}");
    assert!(tmp
        .path()
        .join("m/detect/mahalanobis/detector.json")
        .is_file());
}

#[test]
fn an_interrupted_score_leaves_no_file() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let (model, det) = fitted_classifier(&cwd, tmp.path());
    // 5000 links to the images: long enough at batch size 1 to be interrupted.
    let line = tmp.path().join("line");
    std::fs::create_dir_all(&line).unwrap();
    let sources = defectkit::score::collect_files(&[dataset().to_path_buf()]).unwrap();
    let images: Vec<&PathBuf> = sources
        .iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "png")
                && !p.to_string_lossy().contains("ground_truth")
        })
        .collect();
    for i in 0..5000 {
        std::os::unix::fs::symlink(images[i % images.len()], line.join(format!("{i:04}.png")))
            .unwrap();
    }
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // What a killed earlier run left (its pid cannot exist): cleared by the next run.
    let stale = out_dir.join(".sigint-100.csv.tmp-99999999");
    std::fs::write(&stale, "half a file").unwrap();
    let mut interrupted = 0;
    // The second run gets two Ctrl-C at once: the second ends the process at once, and
    // even then this process's temporary file goes with it.
    for (delay_ms, twice) in [(100u64, false), (300, true), (800, false)] {
        let out = out_dir.join(format!("sigint-{delay_ms}.csv"));
        let child = Command::new(common::defectkit_bin())
            .args([
                "score",
                line.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--detector",
                det.join("detector.json").to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--batch-size",
                "1",
                "--threads",
                "1",
            ])
            .current_dir(&cwd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        for _ in 0..if twice { 2 } else { 1 } {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            let text = std::fs::read_to_string(&out).expect("a finished run leaves its file");
            assert_eq!(csv_rows(&text).len(), 5000);
        } else {
            interrupted += 1;
            assert!(
                !out.exists(),
                "{delay_ms} ms: partial output left: {stderr}"
            );
            if output.status.code() == Some(130) {
                assert!(stderr.contains("interrupted"), "{stderr}");
            }
        }
        let temp: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(temp.is_empty(), "temporary files left: {temp:?}");
    }
    assert!(
        interrupted > 0,
        "no run was interrupted; the test proved nothing"
    );
    assert!(!stale.exists(), "a dead writer's temp file was not removed");
}

#[test]
fn patch_detection_on_the_cli_embed_maps_detect_padim_and_score_maps() {
    let _guard = common::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = common::repo_root();
    let t = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, 4).with_features(4);
    std::fs::create_dir_all(tmp.path().join("p")).unwrap();
    let model = tmp.path().join("p/model.onnx");
    onnxfile::write_model(&model, &t.model).unwrap();
    let h5 = tmp.path().join("p/embeddings.h5");
    let root = format!("data.root={}", dataset().display());
    // --map-channels needs --maps (a usage error, not a silent no-op).
    let err = fails(
        &cwd,
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--out",
            h5.to_str().unwrap(),
            "--map-channels",
            "2",
            &root,
        ],
    );
    assert!(err.contains("--maps"), "{err}");
    let (stdout, _) = ok(
        &cwd,
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--out",
            h5.to_str().unwrap(),
            "--maps",
            &root,
        ],
    );
    assert!(stdout.contains("feature maps: 3×8×8 per image"), "{stdout}");

    let out = tmp.path().join("padim");
    let (stdout, _) = ok(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "detector=padim",
            "detector.sigma=1",
        ],
    );
    assert!(stdout.contains("mean pixel AUROC"), "{stdout}");
    assert!(stdout.contains("statistics:"), "{stdout}");
    for class in CLASSES {
        assert!(out.join("overlays").join(format!("{class}.png")).is_file());
    }
    // --bundle cannot express a patch detector: refused, naming score instead.
    let err = fails(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "--out",
            tmp.path().join("b").to_str().unwrap(),
            "detector=padim",
            "--bundle",
        ],
    );
    assert!(err.contains("cannot be bundled"), "{err}");

    let maps = tmp.path().join("heat");
    let csv = tmp.path().join("scores.csv");
    let test = dataset().join("bottle/test");
    ok(
        &cwd,
        &[
            "score",
            test.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--detector",
            out.join("detector.json").to_str().unwrap(),
            "--class",
            "bottle",
            "--maps",
            maps.to_str().unwrap(),
            "--out",
            csv.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(defectkit::score::CSV_HEADER_WITH_MAPS));
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty());
    for row in rows {
        let map = row.rsplit(',').next().unwrap();
        assert!(Path::new(map).is_file(), "{row}");
    }
    // --maps with an image-level detector is refused: it draws no maps.
    let maha = tmp.path().join("maha");
    ok(
        &cwd,
        &[
            "detect",
            h5.to_str().unwrap(),
            "--out",
            maha.to_str().unwrap(),
        ],
    );
    let err = fails(
        &cwd,
        &[
            "score",
            test.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--detector",
            maha.join("detector.json").to_str().unwrap(),
            "--maps",
            tmp.path().join("heat2").to_str().unwrap(),
        ],
    );
    assert!(err.contains("patch"), "{err}");
    assert!(!tmp.path().join("heat2").exists());
}
