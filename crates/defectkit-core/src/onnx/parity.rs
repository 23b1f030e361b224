//! The export's faithfulness policy: an exported ONNX file must reproduce the training
//! framework's outputs on the same inputs. Both sides run the same seeded probe inputs
//! ([`probe_input`]); [`Parity`] measures how far apart one output is and [`PARITY_TOLERANCE`]
//! decides. Lives here, at the ONNX-file contract, because the two sides that are compared
//! may not depend on each other.

/// The largest difference allowed between the exported model and the trained one: absolute
/// for outputs of magnitude ≤ 1, relative to the output's magnitude beyond that.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// How far one output of the exported model is from the reference (the trained model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parity {
    /// Largest absolute difference.
    pub max_abs_diff: f32,
    /// Largest absolute value of the reference output (the scale the difference is relative
    /// to).
    pub max_abs_value: f32,
}

impl Parity {
    /// Compares two flat outputs; different lengths compare as infinitely far apart.
    pub fn of(reference: &[f32], other: &[f32]) -> Self {
        let max_abs_value = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let max_abs_diff = if reference.len() != other.len() {
            f32::INFINITY
        } else {
            reference
                .iter()
                .zip(other)
                .map(|(x, y)| (x - y).abs())
                .fold(
                    0.0f32,
                    |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                )
        };
        Self {
            max_abs_diff,
            max_abs_value,
        }
    }

    /// Whether the difference is within `tol` in absolute terms for outputs of magnitude
    /// ≤ 1, and within `tol` relative to the output's magnitude beyond that (float32
    /// summation order alone moves large activations by more than a fixed 1e-4).
    pub fn within(&self, tol: f32) -> bool {
        self.max_abs_diff <= tol * self.max_abs_value.max(1.0)
    }

    /// [`Self::within`] the export policy's [`PARITY_TOLERANCE`].
    pub fn is_faithful(&self) -> bool {
        self.within(PARITY_TOLERANCE)
    }
}

/// `batch` seeded random images of `shape` ([C, H, W]), uniform in `[-2, 2]` (the range of
/// normalized pixels), flattened `[batch, C, H, W]`: the inputs both sides are run on.
pub fn probe_input(shape: [usize; 3], batch: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let [c, h, w] = shape;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..batch * c * h * w)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_outputs_are_compared_relative_to_their_magnitude() {
        let p = Parity::of(&[0.5, 200.0], &[0.5, 200.01]);
        assert!(p.is_faithful(), "{p:?}");
        let p = Parity::of(&[0.5, 0.9], &[0.5, 0.9002]);
        assert!(!p.is_faithful(), "{p:?}");
        assert!(!Parity::of(&[1.0], &[f32::NAN]).is_faithful());
        assert!(!Parity::of(&[1.0, 2.0], &[1.0]).is_faithful());
    }

    #[test]
    fn probe_inputs_are_seeded_and_in_range() {
        let a = probe_input([3, 4, 4], 2, 7);
        assert_eq!(a.len(), 96);
        assert_eq!(a, probe_input([3, 4, 4], 2, 7));
        assert_ne!(a, probe_input([3, 4, 4], 2, 8));
        assert!(a.iter().all(|v| (-2.0..2.0).contains(v)));
    }
}
