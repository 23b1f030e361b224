//! The category registry's machinery: the [`CategoryScene`] interface that every category
//! file implements (draw a scene, its albedo, its defect recipes), the `registry!` macro
//! that turns the one-line-per-category list in `mod.rs` into the module declarations, the
//! `CATEGORIES` table and the statically dispatched `Scene` enum, and [`make_defect`].

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::color::C3;
use super::defects::Defect;
use super::geometry::V2;
use super::noise::rpoint;
use super::Scene;

/// What a category file provides besides its `CATEGORY` constant: its scene (a procedural
/// albedo over the unit square, drawn from the base RNG) and its defect recipes.
pub(super) trait CategoryScene: Sized + Clone {
    /// Draw a scene from the base RNG; `px` is one pixel in scene units.
    fn new(rng: &mut ChaCha8Rng, px: f32) -> Self;
    /// The good albedo at `p` (the unit square).
    fn albedo(&self, p: V2) -> C3;
    /// The defect recipe `name` (one of the category's defect types; None for any other),
    /// drawn from the defect RNG after the shared `ns` (a noise seed) and `centre` draws.
    fn defect(&self, name: &str, ns: u32, centre: V2, rng: &mut ChaCha8Rng) -> Option<Defect>;
}

/// The registry: `registry! { module::SceneType, ... }`, one line per category in
/// [`categories`](super::categories) order. For each line it declares `mod module;` (the
/// file `module.rs`, which defines the category's `CATEGORY` and its `SceneType` with
/// `impl CategoryScene`), and it generates the `CATEGORIES` table and the `Scene` enum with
/// its dispatch (`Scene::new` by category name, `albedo`, `defect`).
macro_rules! registry {
    ($($module:ident :: $scene:ident),+ $(,)?) => {
        $(mod $module;)+

        /// Every category, in registry order.
        static CATEGORIES: &[Category] = &[$($module::CATEGORY),+];

        /// A drawn scene of one category (static dispatch over the category files).
        #[derive(Debug, Clone)]
        enum Scene {
            $($scene($module::$scene),)+
        }

        impl Scene {
            /// Draw the scene of the category called `name` from the base RNG.
            fn new(name: &str, rng: &mut ::rand_chacha::ChaCha8Rng, px: f32) -> Scene {
                $(
                    if name == $module::CATEGORY.name {
                        return Scene::$scene(
                            <$module::$scene as registry::CategoryScene>::new(rng, px),
                        );
                    }
                )+
                panic!("synth: no scene for category {:?}", name)
            }
            /// The good albedo at `p`.
            fn albedo(&self, p: geometry::V2) -> color::C3 {
                match self {
                    $(Scene::$scene(s) => registry::CategoryScene::albedo(s, p),)+
                }
            }
            /// The category's defect recipe `name` (see [`registry::CategoryScene::defect`]).
            fn defect(
                &self,
                name: &str,
                ns: u32,
                centre: geometry::V2,
                rng: &mut ::rand_chacha::ChaCha8Rng,
            ) -> Option<defects::Defect> {
                match self {
                    $(Scene::$scene(s) => {
                        registry::CategoryScene::defect(s, name, ns, centre, rng)
                    })+
                }
            }
        }
    };
}
pub(super) use registry;

/// Draw defect `name` for `scene` from the defect RNG: first the draws every recipe
/// shares (a noise seed, then a centre), then the category's recipe. None if the category
/// has no such defect type.
pub(super) fn make_defect(scene: &Scene, name: &str, rng: &mut ChaCha8Rng) -> Option<Defect> {
    let ns: u32 = rng.random();
    let centre = rpoint(rng, 0.22, 0.78);
    scene.defect(name, ns, centre, rng)
}
