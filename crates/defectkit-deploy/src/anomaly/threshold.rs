//! The deployable threshold: a percentile of the scores of good images the detector was not
//! fitted on (the threshold split, `val` by default), so it needs no defective images.
//!
//! A percentile needs enough images. The rule used here: the p-th percentile is taken only
//! from n ≥ 100 / (100 − p) images (20 for p = 95), i.e. when at least one image is expected
//! above it; with fewer, interpolating between the top scores would pretend a precision the
//! data do not have, so the threshold is their maximum, with a warning that says so — never a
//! silently lower value.

use serde::{Deserialize, Serialize};

use defectkit_core::metrics::percentile;

use super::AnomalyError;

/// A class's threshold and how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Anomalous when score ≥ this value.
    pub value: f64,
    /// The percentile asked for.
    pub percentile: f64,
    /// Scores it was taken from.
    pub n: usize,
    /// Whether too few scores forced the maximum.
    pub used_maximum: bool,
}

/// One warning for every class whose threshold had to be the maximum (`(class, threshold)`
/// pairs), or None when there is none.
pub fn maximum_warning(thresholds: &[(&str, &Threshold)], split: &str) -> Option<String> {
    let capped: Vec<String> = thresholds
        .iter()
        .filter(|(_, t)| t.used_maximum)
        .map(|(c, t)| format!("{c} ({})", t.n))
        .collect();
    let p = thresholds.first()?.1.percentile;
    (!capped.is_empty()).then(|| {
        format!(
            "{} class(es) have fewer good {split} images than the {p}th percentile needs ({}): \
             {}. Their thresholds are their maximum scores; expect more false positives than \
             {:.0} % on new good images.",
            capped.len(),
            images_needed(p),
            capped.join(", "),
            100.0 - p
        )
    })
}

/// Images needed for the `p`-th percentile to lie below the maximum: ⌈100 / (100 − p)⌉.
pub fn images_needed(p: f64) -> usize {
    if p >= 100.0 {
        1
    } else {
        (100.0 / (100.0 - p) - 1e-9).ceil().max(1.0) as usize
    }
}

/// The `p`-th percentile (numpy's linear interpolation) of `scores`, or their maximum when
/// there are too few of them ([`images_needed`]).
pub fn percentile_threshold(
    scores: &[f64],
    p: f64,
    class: &str,
) -> Result<Threshold, AnomalyError> {
    if scores.is_empty() {
        return Err(AnomalyError::Invalid(format!(
            "class {class:?}: no good images in the threshold split to set a threshold from"
        )));
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(AnomalyError::Invalid(format!(
            "class {class:?}: non-finite scores in the threshold split"
        )));
    }
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let needed = images_needed(p);
    let (value, used_maximum) = if p < 100.0 && scores.len() < needed {
        (max, true)
    } else {
        let v = percentile(scores, p)
            .ok_or_else(|| AnomalyError::Invalid(format!("percentile {p} is outside [0, 100]")))?;
        (v, false)
    };
    Ok(Threshold {
        value,
        percentile: p,
        n: scores.len(),
        used_maximum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_percentile() {
        // 20 scores 1..=20: index (n−1)·0.95 = 18.05 → 19 + 0.05·(20 − 19) = 19.05.
        let scores: Vec<f64> = (1..=20).map(f64::from).collect();
        let t = percentile_threshold(&scores, 95.0, "c").unwrap();
        assert!((t.value - 19.05).abs() < 1e-12, "{}", t.value);
        assert!(!t.used_maximum);
        assert_eq!(maximum_warning(&[("c", &t)], "val"), None);
    }

    #[test]
    fn too_few_images_give_the_maximum_and_a_warning() {
        let scores = [3.0, 1.0, 2.0];
        let t = percentile_threshold(&scores, 95.0, "bottle").unwrap();
        assert_eq!(t.value, 3.0);
        assert!(t.used_maximum);
        let full = percentile_threshold(&[1.0; 20], 95.0, "carpet").unwrap();
        let w = maximum_warning(&[("bottle", &t), ("carpet", &full)], "val").unwrap();
        assert!(
            w.starts_with("1 class(es)") && w.contains("(20): bottle (3)."),
            "{w}"
        );
        // The median needs 2 images.
        assert_eq!(images_needed(50.0), 2);
        assert_eq!(images_needed(99.0), 100);
        let t = percentile_threshold(&scores, 50.0, "c").unwrap();
        assert_eq!((t.value, t.used_maximum), (2.0, false));
    }

    #[test]
    fn no_images_is_an_error() {
        assert!(percentile_threshold(&[], 95.0, "c").is_err());
        assert!(percentile_threshold(&[f64::NAN], 95.0, "c").is_err());
    }
}
