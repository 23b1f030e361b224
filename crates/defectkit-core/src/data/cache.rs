//! The decoded-image cache: later epochs reuse prepared images instead of decoding files.
//!
//! An [`ImageCache`] holds, per file path, the image after [`PreprocessSpec::prepare`]
//! (decoded, converted to 8-bit RGB, resized and center-cropped) for one spec. Prepared
//! images are small (224² RGB = 147 KiB; all of MVTec AD's 5354 images ≈ 790 MiB at 224²,
//! 260 MiB at 128²), so caching them is what makes epochs after the first cheap.
//!
//! Policy: an optional byte budget (counting pixel bytes, `w·h·3`). When an insert would
//! exceed it, the image is **not inserted** (it is still returned); entries already cached
//! stay. No eviction: the set of cached images is simply the first ones that fit, which is
//! predictable and, for data loaders that visit the same files every epoch, as good as LRU
//! would be (LRU thrashes on a cyclic scan larger than the cache anyway).
//!
//! Thread safety: the map sits behind an `RwLock`, counters are atomics; decoding happens
//! outside any lock, so parallel misses decode in parallel. If two threads miss the same
//! path at the same time, both decode it and the first insert wins (both get equal images).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::image_io::load_rgb8;
use super::{DataError, PreprocessSpec};

/// Counters of an [`ImageCache`], for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to decode the file.
    pub misses: u64,
    /// Images held.
    pub entries: usize,
    /// Pixel bytes held.
    pub bytes: u64,
    /// The byte budget, if any.
    pub budget: Option<u64>,
}

/// Thread-safe cache of prepared images (see the module docs for the policy).
#[derive(Debug)]
pub struct ImageCache {
    spec: PreprocessSpec,
    budget: Option<u64>,
    map: RwLock<HashMap<PathBuf, Arc<RgbImage>>>,
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ImageCache {
    /// An unbounded cache for images prepared with `spec`.
    pub fn new(spec: PreprocessSpec) -> Self {
        Self::with_budget(spec, None)
    }

    /// A cache that stops inserting once it holds `budget` pixel bytes (`None` = unbounded;
    /// `Some(0)` caches nothing, which is handy to switch caching off).
    pub fn with_budget(spec: PreprocessSpec, budget: Option<u64>) -> Self {
        Self {
            spec,
            budget,
            map: RwLock::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The spec images are prepared with.
    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Look `path` up without decoding; counts neither a hit nor a miss.
    pub fn get(&self, path: &Path) -> Option<Arc<RgbImage>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(path).cloned()
    }

    /// The prepared image of `path`: from the cache, or decoded, prepared and (budget
    /// permitting) inserted. Errors are not cached: a corrupt file fails on every call.
    pub fn get_or_load(&self, path: &Path) -> Result<Arc<RgbImage>, DataError> {
        if let Some(img) = self.get(path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(img);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let decoded = load_rgb8(path)?;
        let prepared = Arc::new(self.spec.prepare(&decoded));
        drop(decoded);
        Ok(self.insert(path, prepared))
    }

    /// [`Self::get_or_load`] for many paths: misses are decoded in parallel (rayon), and
    /// the results come back in the order of `paths`.
    pub fn load_many(&self, paths: &[&Path]) -> Vec<Result<Arc<RgbImage>, DataError>> {
        paths.par_iter().map(|p| self.get_or_load(p)).collect()
    }

    /// Insert unless the budget forbids it; returns the cached image if another thread
    /// inserted the same path first.
    fn insert(&self, path: &Path, img: Arc<RgbImage>) -> Arc<RgbImage> {
        let size = img.as_raw().len() as u64;
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = map.get(path) {
            return existing.clone();
        }
        let held = self.bytes.load(Ordering::Relaxed);
        if self.budget.is_none_or(|b| held.saturating_add(size) <= b) {
            self.bytes.store(held + size, Ordering::Relaxed);
            map.insert(path.to_path_buf(), img.clone());
        }
        img
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that decoded a file so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Number of cached images.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixel bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// All counters at once.
    pub fn stats(&self) -> CacheStats {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            hits: self.hits(),
            misses: self.misses(),
            entries: map.len(),
            bytes: self.bytes(),
            budget: self.budget,
        }
    }

    /// Drop every cached image (counters are kept).
    pub fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.clear();
        self.bytes.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn is_send_sync() {
        _assert_send_sync::<ImageCache>();
    }

    #[test]
    fn hit_after_miss_without_reading_the_file_and_budget_stops_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        let b = dir.path().join("b.png");
        RgbImage::from_pixel(10, 6, image::Rgb([9, 8, 7]))
            .save(&a)
            .unwrap();
        RgbImage::from_pixel(10, 6, image::Rgb([1, 2, 3]))
            .save(&b)
            .unwrap();
        // 4x4x3 = 48 bytes per prepared image; budget for one.
        let cache = ImageCache::with_budget(PreprocessSpec::imagenet(4), Some(60));
        let first = cache.get_or_load(&a).unwrap();
        assert_eq!(first.dimensions(), (4, 4));
        std::fs::remove_file(&a).unwrap();
        let second = cache.get_or_load(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        // b fits no more: returned but not cached.
        assert_eq!(
            *cache.get_or_load(&b).unwrap().get_pixel(0, 0),
            image::Rgb([1, 2, 3])
        );
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), 48);
        assert!(cache.get(&b).is_none());
        // Errors are returned and not cached.
        assert!(cache.get_or_load(&dir.path().join("missing.png")).is_err());
        assert_eq!(cache.len(), 1);
    }
}
