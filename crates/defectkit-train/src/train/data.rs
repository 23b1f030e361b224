//! The data module (Lightning's `LightningDataModule` shape): scans the data set once, holds
//! the decoded-image cache, and turns index lists into batches of tensors.
//!
//! Training sees only `train` (held-in train/good), validation only `val` (held-out
//! train/good); `test` holds test/good and the defective images.

use std::path::PathBuf;

use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::TrainError;
use defectkit_core::config::schema::DataConfig;
use defectkit_core::data::cache::ImageCache;
use defectkit_core::data::mvtec::{Index, IndexOptions, Sample, Split};
use defectkit_core::data::PreprocessSpec;

/// One batch on the device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalized images `[B, 3, S, S]`.
    pub images: Tensor<4>,
    /// Category index per image `[B]`.
    pub targets: Tensor<1, Int>,
    /// 0 good, 1 defective, per image.
    pub anomaly: Vec<u8>,
    /// Source files.
    pub paths: Vec<PathBuf>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Lightning-shaped data module: `setup` once, then loaders per split.
pub trait DataModule {
    /// Scan the data set and prepare caches.
    fn setup(&mut self) -> Result<(), TrainError>;
    /// Category names, index = class target.
    fn class_names(&self) -> &[String];
    /// Batches (as sample index lists) of one epoch of `split`; `train` is shuffled with
    /// `seed` and the epoch, the others keep file order.
    fn batches(&self, split: Split, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>>;
    /// Load the samples of one batch onto `device`.
    fn load(&self, split: Split, indices: &[usize], device: &Device) -> Result<Batch, TrainError>;
    /// Number of samples of `split`.
    fn len(&self, split: Split) -> usize;
}

/// MVTec-layout data set (real or synthetic) with the decoded-image cache.
#[derive(Debug)]
pub struct ImageDataModule {
    cfg: DataConfig,
    index: Option<Index>,
    splits: [Vec<Sample>; 3],
    cache: ImageCache,
    /// Images dropped at setup because they do not decode (`data.strict=false`).
    skipped: Vec<PathBuf>,
    /// A warning per dropped image, naming it.
    skip_warnings: Vec<String>,
}

fn slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    }
}

impl ImageDataModule {
    /// A module over `cfg` (call [`DataModule::setup`] before use).
    pub fn new(cfg: DataConfig) -> Result<Self, TrainError> {
        cfg.preprocess.validate()?;
        let cache = if cfg.cache {
            ImageCache::new(cfg.preprocess.clone())
        } else {
            ImageCache::with_budget(cfg.preprocess.clone(), Some(0))
        };
        Ok(Self {
            cfg,
            index: None,
            splits: [Vec::new(), Vec::new(), Vec::new()],
            cache,
            skipped: Vec::new(),
            skip_warnings: Vec::new(),
        })
    }

    /// The preprocessing applied to every image.
    pub fn preprocess(&self) -> &PreprocessSpec {
        &self.cfg.preprocess
    }

    /// Samples of a split, in loader order.
    pub fn samples(&self, split: Split) -> &[Sample] {
        &self.splits[slot(split)]
    }

    /// Warnings from scanning (missing masks, ignored files, …) and from dropping corrupt
    /// images.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .index
            .as_ref()
            .map(|i| i.warnings.clone())
            .unwrap_or_default();
        w.extend(self.skip_warnings.iter().cloned());
        w
    }

    /// Images dropped at setup because they do not decode (only with `data.strict=false`).
    pub fn skipped(&self) -> &[PathBuf] {
        &self.skipped
    }

    /// With `data.strict=false` (warn and skip, as documented): decode every image once and
    /// drop those that fail, so that one corrupt file cannot abort training mid-epoch. The
    /// decoded images stay in the cache when it is on, so this costs no extra decoding then.
    fn drop_undecodable(&mut self) {
        for split in [Split::Train, Split::Val, Split::Test] {
            let samples = std::mem::take(&mut self.splits[slot(split)]);
            let paths: Vec<&std::path::Path> = samples.iter().map(|s| s.path.as_path()).collect();
            let results = self.cache.load_many(&paths);
            let mut kept = Vec::with_capacity(samples.len());
            for (sample, result) in samples.into_iter().zip(results) {
                match result {
                    Ok(_) => kept.push(sample),
                    Err(e) => {
                        self.skip_warnings.push(format!(
                            "skipped {} image {} (data.strict=false): {e}",
                            split.as_str(),
                            sample.path.display()
                        ));
                        self.skipped.push(sample.path.clone());
                    }
                }
            }
            self.splits[slot(split)] = kept;
        }
    }
}

impl DataModule for ImageDataModule {
    fn setup(&mut self) -> Result<(), TrainError> {
        let opts = IndexOptions {
            classes: self.cfg.classes.clone(),
            val_fraction: self.cfg.val_fraction,
            seed: self.cfg.split_seed,
            strict: self.cfg.strict,
        };
        let index = Index::scan(&self.cfg.root, &opts)?;
        for split in [Split::Train, Split::Val, Split::Test] {
            self.splits[slot(split)] = index.split(split).cloned().collect();
        }
        if !self.cfg.strict {
            self.drop_undecodable();
        }
        if self.splits[0].is_empty() {
            return Err(TrainError::Data(format!(
                "no training images under {}",
                self.cfg.root.display()
            )));
        }
        if self.splits[0]
            .iter()
            .chain(&self.splits[1])
            .any(|s| !s.is_good())
        {
            return Err(TrainError::Data(
                "a defective image reached the train or validation split".into(),
            ));
        }
        self.index = Some(index);
        Ok(())
    }

    fn class_names(&self) -> &[String] {
        self.index
            .as_ref()
            .map(|i| i.classes.as_slice())
            .unwrap_or(&[])
    }

    fn batches(&self, split: Split, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len(split)).collect();
        if split == Split::Train {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            order.shuffle(&mut rng);
        }
        order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    fn load(&self, split: Split, indices: &[usize], device: &Device) -> Result<Batch, TrainError> {
        let samples: Vec<&Sample> = indices
            .iter()
            .map(|&i| &self.splits[slot(split)][i])
            .collect();
        let paths: Vec<&std::path::Path> = samples.iter().map(|s| s.path.as_path()).collect();
        let side = self.cfg.preprocess.input_size() as usize;
        let per = 3 * side * side;
        let mut data = vec![0f32; per * samples.len()];
        for (i, img) in self.cache.load_many(&paths).into_iter().enumerate() {
            let img = img?;
            self.cfg
                .preprocess
                .normalize_into(&img, &mut data[i * per..(i + 1) * per])?;
        }
        let b = samples.len();
        let images = Tensor::from_data(TensorData::new(data, [b, 3, side, side]), device);
        let t: Vec<i64> = samples.iter().map(|s| s.class_index as i64).collect();
        let targets = Tensor::from_data(TensorData::new(t, [b]), device);
        Ok(Batch {
            images,
            targets,
            anomaly: samples.iter().map(|s| s.label()).collect(),
            paths: samples.iter().map(|s| s.path.clone()).collect(),
        })
    }

    fn len(&self, split: Split) -> usize {
        self.splits[slot(split)].len()
    }
}
