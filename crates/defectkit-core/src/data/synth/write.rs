//! Writing the data set: validating the options, the `synth.json` manifest, encoding the
//! PNGs of every image and mask in parallel into `<out>.partial-<pid>`, and swapping the
//! complete set into place.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::{
    categories, category, folder_seed, render, Category, SynthError, SynthOptions, SynthSummary,
};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One image to generate.
struct Job {
    cat: &'static Category,
    split: &'static str,
    defect: Option<&'static str>,
    index: usize,
}

impl Job {
    fn folder(&self) -> &'static str {
        self.defect.unwrap_or("good")
    }
}

/// Written next to the class folders as `synth.json`, so a data set says how it was made.
#[derive(Serialize)]
struct Manifest<'a> {
    generator: &'static str,
    version: u32,
    seed: u64,
    image_size: u32,
    train_good: usize,
    test_good: usize,
    test_defect_per_type: usize,
    classes: &'a [String],
}

impl<'a> Manifest<'a> {
    /// The manifest of a set generated with `opts` for `classes`.
    fn of(opts: &SynthOptions, classes: &'a [String]) -> Self {
        Manifest {
            generator: "defectkit synth",
            version: 1,
            seed: opts.seed,
            image_size: opts.image_size,
            train_good: opts.train_good,
            test_good: opts.test_good,
            test_defect_per_type: opts.test_defect_per_type,
            classes,
        }
    }
}

/// The name of the manifest file [`generate`] writes at the data set root.
pub const MANIFEST: &str = "synth.json";

/// True when `out` already holds a complete set generated with exactly these options (its
/// `synth.json` matches), so that scripts can skip regenerating it.
pub fn is_up_to_date(opts: &SynthOptions, out: &Path) -> bool {
    let Ok(cats) = resolve_classes(opts) else {
        return false;
    };
    let classes: Vec<String> = cats.iter().map(|c| c.name.to_string()).collect();
    let want = Manifest::of(opts, &classes);
    let Ok(text) = fs::read_to_string(out.join(MANIFEST)) else {
        return false;
    };
    match (
        serde_json::from_str::<serde_json::Value>(&text),
        serde_json::to_value(&want),
    ) {
        (Ok(have), Ok(want)) => have == want,
        _ => false,
    }
}

fn resolve_classes(opts: &SynthOptions) -> Result<Vec<&'static Category>, SynthError> {
    let Some(names) = &opts.classes else {
        return Ok(categories().iter().collect());
    };
    for name in names {
        if category(name).is_none() {
            return Err(SynthError::UnknownClass {
                name: name.clone(),
                valid: categories().iter().map(|c| c.name.to_string()).collect(),
            });
        }
    }
    let chosen: Vec<_> = categories()
        .iter()
        .filter(|c| names.iter().any(|n| n == c.name))
        .collect();
    if chosen.is_empty() {
        return Err(SynthError::InvalidOptions("the class list is empty".into()));
    }
    Ok(chosen)
}

fn validate(opts: &SynthOptions) -> Result<(), SynthError> {
    if !(16..=4096).contains(&opts.image_size) {
        return Err(SynthError::InvalidOptions(format!(
            "image_size must be between 16 and 4096 pixels, got {}",
            opts.image_size
        )));
    }
    for (what, n) in [
        ("train_good", opts.train_good),
        ("test_good", opts.test_good),
        ("test_defect_per_type", opts.test_defect_per_type),
    ] {
        if n > 1000 {
            return Err(SynthError::InvalidOptions(format!(
                "{what} must be at most 1000 (file names have three digits), got {n}"
            )));
        }
    }
    if opts.train_good == 0 {
        return Err(SynthError::InvalidOptions(
            "train_good must be at least 1 (every category needs train/good)".into(),
        ));
    }
    Ok(())
}

fn encode_png(
    path: &Path,
    bytes: &[u8],
    size: u32,
    color: image::ExtendedColorType,
) -> Result<(), SynthError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut buf = Vec::with_capacity(bytes.len() / 2);
    PngEncoder::new_with_quality(&mut buf, CompressionType::Fast, FilterType::Adaptive)
        .write_image(bytes, size, size, color)
        .map_err(|source| SynthError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    fs::write(path, &buf).map_err(io_err(path))
}

fn write_job(root: &Path, job: &Job, opts: &SynthOptions) -> Result<(), SynthError> {
    let class_dir = root.join(job.cat.name);
    let img_dir = class_dir.join(job.split).join(job.folder());
    let seed = folder_seed(opts.seed, job.split, job.folder());
    let (img, mask) = render(job.cat, job.defect, seed, job.index, opts.image_size);
    let path = img_dir.join(format!("{:03}.png", job.index));
    if job.cat.grayscale {
        let g: Vec<u8> = img.pixels().map(|p| p.0[0]).collect();
        encode_png(&path, &g, opts.image_size, image::ExtendedColorType::L8)?;
    } else {
        encode_png(
            &path,
            img.as_raw(),
            opts.image_size,
            image::ExtendedColorType::Rgb8,
        )?;
    }
    if let Some(d) = job.defect {
        let mpath = class_dir
            .join("ground_truth")
            .join(d)
            .join(format!("{:03}_mask.png", job.index));
        encode_png(
            &mpath,
            mask.as_raw(),
            opts.image_size,
            image::ExtendedColorType::L8,
        )?;
    }
    Ok(())
}

fn sibling(out: &Path, suffix: &str) -> Result<PathBuf, SynthError> {
    let name = out.file_name().ok_or_else(|| {
        SynthError::InvalidOptions(format!(
            "output path {} must name a directory",
            out.display()
        ))
    })?;
    Ok(out.with_file_name(format!(
        "{}.{suffix}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Generate the data set under `out` (MVTec layout) and return what was written.
///
/// The set is written into `<out>.partial-<pid>` and renamed into place only when complete,
/// so a failure never leaves a half-written data set (the partial folder is removed). An
/// existing non-empty `out` is an error unless `opts.force`; then it is replaced only after
/// the new set is complete. `progress` shows a bar on stderr when stderr is a terminal.
pub fn generate(
    opts: &SynthOptions,
    out: &Path,
    progress: bool,
) -> Result<SynthSummary, SynthError> {
    let start = Instant::now();
    validate(opts)?;
    let cats = resolve_classes(opts)?;

    let exists = fs::symlink_metadata(out).is_ok();
    let non_empty = exists
        && match fs::read_dir(out) {
            Ok(mut it) => it.next().is_some(),
            Err(_) => true, // a file (or unreadable): never overwrite silently
        };
    if non_empty && !opts.force {
        return Err(SynthError::OutputExists {
            path: out.to_path_buf(),
        });
    }

    let partial = sibling(out, "partial")?;
    let _partial_guard = crate::fsutil::TempGuard::new(partial.clone());
    // Leftovers of an earlier run that was killed (its pid is gone).
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::fsutil::clear_stale_temps(parent);
    }
    if fs::symlink_metadata(&partial).is_ok() {
        fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }

    let mut jobs = Vec::new();
    for &cat in &cats {
        jobs.extend((0..opts.train_good).map(|index| Job {
            cat,
            split: "train",
            defect: None,
            index,
        }));
        jobs.extend((0..opts.test_good).map(|index| Job {
            cat,
            split: "test",
            defect: None,
            index,
        }));
        for &d in cat.defects {
            jobs.extend((0..opts.test_defect_per_type).map(|index| Job {
                cat,
                split: "test",
                defect: Some(d),
                index,
            }));
        }
    }

    let result = (|| {
        for &cat in &cats {
            let cd = partial.join(cat.name);
            let mut dirs = vec![cd.join("train/good"), cd.join("test/good")];
            for d in cat.defects {
                dirs.push(cd.join("test").join(d));
                dirs.push(cd.join("ground_truth").join(d));
            }
            for d in dirs {
                fs::create_dir_all(&d).map_err(io_err(&d))?;
            }
        }
        let bar = if progress && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(jobs.len() as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "synth {bar:40} {pos}/{len} images  {elapsed_precise} (eta {eta})",
            ) {
                b.set_style(style);
            }
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        jobs.par_iter().try_for_each(|job| {
            if crate::interrupt::stop_requested() {
                return Err(SynthError::Interrupted);
            }
            write_job(&partial, job, opts)?;
            bar.inc(1);
            Ok::<(), SynthError>(())
        })?;
        bar.finish_and_clear();
        let classes: Vec<String> = cats.iter().map(|c| c.name.to_string()).collect();
        let manifest = Manifest::of(opts, &classes);
        let mpath = partial.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        text.push('\n');
        fs::write(&mpath, text).map_err(io_err(&mpath))?;
        Ok::<(), SynthError>(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }

    // Swap into place: move the old set aside, rename the new one, then delete the old.
    let old = if exists {
        let old = sibling(out, "old")?;
        if let Err(source) = fs::rename(out, &old) {
            let _ = fs::remove_dir_all(&partial);
            return Err(SynthError::Io {
                path: out.to_path_buf(),
                source,
            });
        }
        Some(old)
    } else {
        None
    };
    if let Err(source) = fs::rename(&partial, out) {
        if let Some(old) = &old {
            let _ = fs::rename(old, out);
        }
        let _ = fs::remove_dir_all(&partial);
        return Err(SynthError::Io {
            path: out.to_path_buf(),
            source,
        });
    }
    if let Some(old) = old {
        let res = if old.is_dir() {
            fs::remove_dir_all(&old)
        } else {
            fs::remove_file(&old)
        };
        res.map_err(io_err(&old))?;
    }

    let masks: usize = cats
        .iter()
        .map(|c| c.defects.len() * opts.test_defect_per_type)
        .sum();
    Ok(SynthSummary {
        root: out.to_path_buf(),
        classes: cats.iter().map(|c| c.name.to_string()).collect(),
        images: jobs.len(),
        masks,
        seconds: start.elapsed().as_secs_f64(),
    })
}
