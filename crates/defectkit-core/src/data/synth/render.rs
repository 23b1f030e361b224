//! Rendering one image and its mask in memory: draw the category's scene and the lighting
//! from the base RNG, rasterise the albedo, apply the defect (if any) from its own RNG so
//! that exactly the changed pixels are masked, then light and quantise.

use image::{GrayImage, Luma, Rgb, RgbImage};

use super::color::{max_abs_diff, C3};
use super::defects::{ensure_changed, MASK_THRESHOLD};
use super::geometry::v2;
use super::lighting::Lighting;
use super::noise::rng_for;
use super::registry::make_defect;
use super::{fnv1a, Category, Scene};

/// Generate one image (and its mask, all-zero for good images) in memory; used by tests and by generate.
///
/// The good content (scene, lighting, noise) depends only on `(seed, category, index)`; the
/// defect only on `(seed, category, defect, index)`. So `render(c, Some(d), s, i, n)` equals
/// `render(c, None, s, i, n)` outside its mask, and the mask is exactly the pixels the
/// defect changed. Grayscale categories come back with three equal channels.
///
/// # Panics
/// If `category` is not one of [`categories`](super::categories) or `defect` is not one of
/// its defect types (both are programmer errors: [`generate`](super::generate) validates
/// names first), or `size` is 0.
pub fn render(
    category: &Category,
    defect: Option<&str>,
    seed: u64,
    index: usize,
    size: u32,
) -> (RgbImage, GrayImage) {
    assert!(size > 0, "synth: image size must be positive");
    let n = size as usize;
    let px = 1.0 / size as f32;
    let class_h = fnv1a(category.name);
    let mut base = rng_for(&[seed, class_h, fnv1a("base"), index as u64]);
    let scene = Scene::new(category.name, &mut base, px);
    let light = Lighting::new(&mut base, category.grayscale);

    let pos = |i: usize| (i as f32 + 0.5) * px;
    let mut albedo: Vec<C3> = Vec::with_capacity(n * n);
    for y in 0..n {
        for x in 0..n {
            albedo.push(scene.albedo(v2(pos(x), pos(y))));
        }
    }

    let mut mask = GrayImage::new(size, size);
    if let Some(name) = defect {
        assert!(
            category.defects.contains(&name),
            "synth: category {:?} has no defect type {name:?} (it has {:?})",
            category.name,
            category.defects
        );
        let mut drng = rng_for(&[seed, class_h, fnv1a(name), index as u64]);
        let d = make_defect(&scene, name, &mut drng).unwrap_or_else(|| {
            panic!(
                "synth: defect {name:?} not implemented for {}",
                category.name
            )
        });
        for y in 0..n {
            for x in 0..n {
                let p = v2(pos(x), pos(y));
                if !(d.region)(p) {
                    continue;
                }
                let old = albedo[y * n + x];
                let mut new = (d.paint)(p, old);
                if d.solid {
                    new = ensure_changed(old, new);
                }
                if max_abs_diff(new, old) >= MASK_THRESHOLD {
                    albedo[y * n + x] = new;
                    mask.put_pixel(x as u32, y as u32, Luma([255]));
                }
            }
        }
    }

    let mut img = RgbImage::new(size, size);
    for y in 0..n {
        for x in 0..n {
            let p = v2(pos(x), pos(y));
            let c = light.apply(albedo[y * n + x], p, x as u32, y as u32);
            img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }
    (img, mask)
}
