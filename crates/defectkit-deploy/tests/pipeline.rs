//! The shared decode → preprocess → run loop (`pipeline::run_batches`) on solid-colour PNGs
//! whose model input and outputs are computed here by hand (ImageNet normalisation of one
//! colour; the tiny model's weights): batches come back in order with the right inputs and
//! outputs, undecodable and missing files are skipped or fatal as asked, a batch of only
//! bad files is not run, and the cancel flag stops the loop between batches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use defectkit_core::onnx::testing::TinyModel;
use defectkit_core::onnx::{self as onnxfile, ModelKind, Parity};
use defectkit_deploy::pipeline::{run_batches, PipelineError, PipelineOptions};
use defectkit_deploy::runtime::{OnnxModel, RuntimeOptions};

const SIDE: usize = 16;
const DIM: usize = 5;
const CLASSES: [&str; 3] = ["bottle", "carpet", "screw"];
const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// (file name, width, height, colour): sizes other than SIDE go through the resize.
const IMAGES: [(&str, u32, u32, [u8; 3]); 7] = [
    ("a.png", 16, 16, [255, 0, 0]),
    ("b.png", 16, 16, [0, 200, 30]),
    ("c.png", 48, 20, [10, 20, 250]),
    ("d.png", 8, 8, [128, 128, 128]),
    ("e.png", 16, 16, [0, 0, 0]),
    ("f.png", 33, 17, [240, 180, 60]),
    ("g.png", 16, 16, [1, 254, 127]),
];

fn write_solid(dir: &Path, name: &str, w: u32, h: u32, rgb: [u8; 3]) -> PathBuf {
    let path = dir.join(name);
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(&path)
        .unwrap();
    path
}

/// The images of [`IMAGES`] in `dir`, with their colours.
fn solid_images(dir: &Path) -> (Vec<PathBuf>, Vec<[u8; 3]>) {
    IMAGES
        .iter()
        .map(|&(name, w, h, rgb)| (write_solid(dir, name, w, h, rgb), rgb))
        .unzip()
}

/// The normalised value of each channel of a solid `rgb` image.
fn normalised(rgb: [u8; 3]) -> [f64; 3] {
    std::array::from_fn(|c| (f64::from(rgb[c]) / 255.0 - MEAN[c]) / STD[c])
}

/// The model input of one solid image: each plane constant.
fn expected_input(rgb: [u8; 3]) -> Vec<f32> {
    normalised(rgb)
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v as f32, SIDE * SIDE))
        .collect()
}

/// `embedding = means · W` and `logits = embedding · H`, with the means known exactly.
fn expected_outputs(tiny: &TinyModel, rgb: [u8; 3]) -> (Vec<f32>, Vec<f32>) {
    let m = normalised(rgb);
    let w = &tiny.projection;
    let embedding: Vec<f64> = (0..DIM)
        .map(|j| (0..3).map(|c| m[c] * f64::from(w[c * DIM + j])).sum())
        .collect();
    let n = CLASSES.len();
    let logits = (0..n)
        .map(|k| {
            (0..DIM)
                .map(|j| embedding[j] * f64::from(tiny.head[j * n + k]))
                .sum::<f64>() as f32
        })
        .collect();
    (logits, embedding.iter().map(|&v| v as f32).collect())
}

fn load(dir: &Path, tiny: &TinyModel) -> OnnxModel {
    let path = dir.join(format!("{}.onnx", tiny.metadata.kind.as_str()));
    onnxfile::write_model(&path, &tiny.model).unwrap();
    OnnxModel::load(&path, &RuntimeOptions::default()).unwrap()
}

fn opts(batch_size: usize, strict: bool) -> PipelineOptions {
    PipelineOptions {
        batch_size,
        strict,
        warn_skipped: true,
    }
}

fn close(what: &str, want: &[f32], got: &[f32]) {
    let p = Parity::of(want, got);
    let head = |v: &[f32]| v.iter().take(6).copied().collect::<Vec<f32>>();
    assert!(
        p.within(1e-5),
        "{what}: {p:?}\nwant {:?}…\n got {:?}…",
        head(want),
        head(got)
    );
}

#[test]
fn batches_carry_the_decoded_images_and_the_models_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (items, colours) = solid_images(dir.path());
    let tiny = TinyModel::classifier(ModelKind::CnnScratch, SIDE, &CLASSES, DIM);
    let mut model = load(dir.path(), &tiny);
    let bar = indicatif::ProgressBar::hidden();
    let never = AtomicBool::new(false);

    let mut sizes = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let skipped = run_batches(&mut model, &items, opts(3, true), &never, &bar, |b| {
        let first = seen.len();
        let n = b.items.len();
        sizes.push(n);
        assert_eq!(b.outputs.primary_shape, [n, CLASSES.len()]);
        for (i, item) in b.items.iter().enumerate() {
            let rgb = colours[first + i];
            let per = 3 * SIDE * SIDE;
            close(
                &format!("input of {}", item.display()),
                &expected_input(rgb),
                &b.input[i * per..(i + 1) * per],
            );
            let (logits, embedding) = expected_outputs(&tiny, rgb);
            let k = CLASSES.len();
            close(
                &format!("embedding of {}", item.display()),
                &embedding,
                &b.outputs.embedding[i * DIM..(i + 1) * DIM],
            );
            close(
                &format!("logits of {}", item.display()),
                &logits,
                &b.outputs.primary[i * k..(i + 1) * k],
            );
        }
        seen.extend(b.items.iter().map(|p| (*p).clone()));
    })
    .unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(seen, items, "every image once, in order");
    assert_eq!(bar.position(), items.len() as u64);

    // A batch size of 0 is taken as 1.
    let mut sizes = Vec::new();
    run_batches(&mut model, &items, opts(0, true), &never, &bar, |b| {
        sizes.push(b.items.len())
    })
    .unwrap();
    assert_eq!(sizes, vec![1; items.len()]);

    // An autoencoder's primary output is its reconstruction, 0.5 · input.
    let ae = TinyModel::autoencoder(SIDE, &CLASSES, DIM);
    let mut model = load(dir.path(), &ae);
    let mut batches = 0;
    run_batches(&mut model, &items, opts(4, true), &never, &bar, |b| {
        batches += 1;
        assert_eq!(b.outputs.primary_shape, [b.items.len(), 3, SIDE, SIDE]);
        let half: Vec<f32> = b.input.iter().map(|v| 0.5 * v).collect();
        close("reconstruction", &half, &b.outputs.primary);
        close("embedding", &ae.forward(&b.input).1, &b.outputs.embedding);
    })
    .unwrap();
    assert_eq!(batches, 2);
}

#[test]
fn undecodable_images_are_skipped_unless_strict() {
    let dir = tempfile::tempdir().unwrap();
    let (good, colours) = solid_images(dir.path());
    let garbage = dir.path().join("garbage.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\n but then nothing").unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"plain text named .png").unwrap();
    let missing = dir.path().join("missing.png");
    let tiny = TinyModel::classifier(ModelKind::Teacher, SIDE, &CLASSES, DIM);
    let mut model = load(dir.path(), &tiny);
    let never = AtomicBool::new(false);

    // Chunks of 2: [a, garbage] [b, missing] [bad, bad] [c, d]: the all-bad chunk is
    // delivered with no images (nothing run) and its two skips.
    let items = vec![
        good[0].clone(),
        garbage.clone(),
        good[1].clone(),
        missing.clone(),
        text.clone(),
        garbage.clone(),
        good[2].clone(),
        good[3].clone(),
    ];
    let bar = indicatif::ProgressBar::hidden();
    let mut batches: Vec<Vec<PathBuf>> = Vec::new();
    let mut per_batch_skips: Vec<Vec<PathBuf>> = Vec::new();
    let skipped = run_batches(&mut model, &items, opts(2, false), &never, &bar, |b| {
        // The outputs belong to the images kept, not to their skipped neighbours.
        for (i, item) in b.items.iter().enumerate() {
            let k = good.iter().position(|g| g == *item).unwrap();
            let (_, embedding) = expected_outputs(&tiny, colours[k]);
            close(
                "embedding",
                &embedding,
                &b.outputs.embedding[i * DIM..(i + 1) * DIM],
            );
        }
        if b.items.is_empty() {
            assert!(b.outputs.embedding.is_empty() && b.input.is_empty());
        }
        batches.push(b.items.iter().map(|p| (*p).clone()).collect());
        per_batch_skips.push(b.skipped.iter().map(|(p, _)| (*p).clone()).collect());
    })
    .unwrap();
    assert_eq!(
        batches,
        [
            vec![good[0].clone()],
            vec![good[1].clone()],
            vec![],
            vec![good[2].clone(), good[3].clone()]
        ]
    );
    assert_eq!(
        per_batch_skips,
        [
            vec![garbage.clone()],
            vec![missing.clone()],
            vec![text.clone(), garbage.clone()],
            vec![]
        ]
    );
    let names: Vec<&Path> = skipped.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(names, [&garbage, &missing, &text, &garbage]);
    assert!(skipped.iter().all(|(_, why)| !why.is_empty()));
    assert_eq!(
        bar.position(),
        items.len() as u64,
        "skipped images count too"
    );

    // Strict: the batches before the bad image are delivered, then the run fails naming it.
    let items = vec![
        good[0].clone(),
        good[1].clone(),
        good[2].clone(),
        garbage.clone(),
        good[4].clone(),
    ];
    let mut delivered = 0;
    let e = run_batches(&mut model, &items, opts(2, true), &never, &bar, |b| {
        delivered += b.items.len()
    })
    .unwrap_err();
    assert!(matches!(e, PipelineError::Data(_)), "{e:?}");
    assert!(e.to_string().contains("garbage.png"), "{e}");
    assert_eq!(delivered, 2);
    let e = run_batches(
        &mut model,
        std::slice::from_ref(&missing),
        opts(2, true),
        &never,
        &bar,
        |_| panic!("nothing to deliver"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing.png"), "{e}");
}

#[test]
fn the_cancel_flag_stops_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (items, _) = solid_images(dir.path());
    let tiny = TinyModel::classifier(ModelKind::CnnDistilled, SIDE, &CLASSES, DIM);
    let mut model = load(dir.path(), &tiny);

    // Set before the run: nothing is decoded or run.
    let bar = indicatif::ProgressBar::hidden();
    let stop = AtomicBool::new(true);
    let mut calls = 0;
    let e = run_batches(&mut model, &items, opts(3, false), &stop, &bar, |_| {
        calls += 1
    })
    .unwrap_err();
    assert!(matches!(e, PipelineError::Interrupted), "{e:?}");
    assert_eq!(e.to_string(), "interrupted");
    assert_eq!((calls, bar.position()), (0, 0));

    // Set during the first batch (as Ctrl-C would): that batch completes, no other starts.
    let bar = indicatif::ProgressBar::hidden();
    let cancel = AtomicBool::new(false);
    let mut calls = 0;
    let e = run_batches(&mut model, &items, opts(3, false), &cancel, &bar, |_| {
        calls += 1;
        cancel.store(true, Ordering::SeqCst);
    })
    .unwrap_err();
    assert!(matches!(e, PipelineError::Interrupted), "{e:?}");
    assert_eq!((calls, bar.position()), (1, 3));

    // Set during the last batch: there is no next batch to refuse, so the run completes.
    let bar = indicatif::ProgressBar::hidden();
    let cancel = AtomicBool::new(false);
    let mut calls = 0;
    let n_batches = items.len().div_ceil(3);
    run_batches(&mut model, &items, opts(3, false), &cancel, &bar, |_| {
        calls += 1;
        if calls == n_batches {
            cancel.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert_eq!(calls, n_batches);
}
