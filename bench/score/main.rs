//! Pure-inference throughput of an exported model in ONNX Runtime, the peer of
//! `defectkit score`.
//!
//! Decodes and preprocesses one batch of real images (the first `--batch-size` of FILES,
//! cycling when there are fewer) with the model's own spec (`metadata.preprocess`, as the
//! pipeline does), runs `--warmup` untimed batches, then times `model.run(&batch)` on that
//! preloaded batch, batch after batch, for about `--target-seconds` (at least 2 batches), and
//! prints one JSON line:
//! `{"what":"inference","batch","threads","img_per_s","batches","seconds",...}`
//! (+ `batch_ms` min/median/max, `warmup_seconds`, and `decode_ms_per_img`: the
//! single-threaded load + preprocess time per image of the preloaded batch, for reading how
//! much CPU the pipeline's decoding takes next to inference).
//!
//! `bench/score/run.sh` runs it before and after timing `defectkit score` on folders of 1k
//! and 10k images with the same model, batch size and threads, and writes
//! `bench/results/score.md`. This is a benchmark, not a test: nothing is asserted.
//!
//! ```text
//! cargo run --release --example bench_score -- --model exports/main/b/model.onnx \
//!     data/synthetic/*/test/*/*.png
//! ```

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use defectkit::data::image_io::load_rgb8;
use defectkit::runtime::{OnnxModel, RuntimeOptions};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Time ONNX Runtime inference of an exported model on a preloaded batch")]
struct Args {
    /// The exported model (`defectkit export` writes model.onnx).
    #[arg(long, value_name = "MODEL.onnx")]
    model: PathBuf,
    /// Images per inference batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// ONNX Runtime intra-op threads (default: ONNX Runtime's choice, all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Untimed batches before timing.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Target duration of the timed loop.
    #[arg(long, default_value_t = 10.0)]
    target_seconds: f64,
    /// Image files; the batch is made of the first --batch-size of them (cycling).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if args.batch_size == 0 {
        eprintln!("--batch-size must be at least 1");
        std::process::exit(2);
    }
    let opts = RuntimeOptions {
        threads: args.threads,
        ..Default::default()
    };
    let mut model = OnnxModel::load(&args.model, &opts).unwrap_or_else(|e| {
        eprintln!("error: {}: {e}", args.model.display());
        std::process::exit(1);
    });

    // One batch of real images, preprocessed exactly as the pipeline does.
    let spec = model.metadata.preprocess.clone();
    let per_sample = model.sample_len();
    let mut batch = vec![0.0f32; args.batch_size * per_sample];
    let decode_start = Instant::now();
    for (i, out) in batch.chunks_mut(per_sample).enumerate() {
        let path = &args.files[i % args.files.len()];
        let img = load_rgb8(path).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1);
        });
        spec.normalize_into(&spec.prepare(&img), out)
            .unwrap_or_else(|e| {
                eprintln!("error: {}: {e}", path.display());
                std::process::exit(1);
            });
    }
    let decode_seconds = decode_start.elapsed().as_secs_f64();

    let run = |model: &mut OnnxModel| {
        let t = Instant::now();
        if let Err(e) = model.run(&batch) {
            eprintln!("error: inference failed: {e}");
            std::process::exit(1);
        }
        t.elapsed().as_secs_f64()
    };
    let warm: Vec<f64> = (0..args.warmup).map(|_| run(&mut model)).collect();

    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 2 || start.elapsed().as_secs_f64() < args.target_seconds {
        times.push(run(&mut model));
    }
    let seconds = start.elapsed().as_secs_f64();

    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let ms = |s: f64| (s * 1e4).round() / 10.0;
    let line = serde_json::json!({
        "what": "inference",
        "model": args.model.display().to_string(),
        "kind": model.metadata.kind.as_str(),
        "input_shape": model.metadata.input_shape,
        "batch": args.batch_size,
        "threads": args.threads,
        "batches": times.len(),
        "seconds": seconds,
        "img_per_s": (times.len() * args.batch_size) as f64 / seconds,
        "batch_ms": {
            "min": ms(sorted[0]),
            "median": ms(sorted[sorted.len() / 2]),
            "max": ms(sorted[sorted.len() - 1]),
        },
        "warmup_seconds": warm,
        "decode_ms_per_img": ms(decode_seconds / args.batch_size as f64),
    });
    println!("{line}");
}
