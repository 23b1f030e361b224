//! Standardization and principal component analysis of embeddings, as scikit-learn computes
//! them: [`Standardizer`] is `StandardScaler` (population std, near-constant features scaled
//! by 1) and [`Pca`] is `PCA(svd_solver="full")`: a thin SVD of the centred rows (faer's),
//! with the components' signs fixed as sklearn 1.9's `svd_flip(u_based_decision=False)` fixes
//! them (each principal axis's entry of largest magnitude is positive), so the axes agree
//! with sklearn's up to the rounding of the two SVDs.

use faer::Mat;
use ndarray::{Array2, ArrayView2};

use super::StatsError;

/// Per-feature standardization fitted on some rows (e.g. good images), applied to any:
/// (x − mean)/scale, with scale the population standard deviation (ddof 0, like sklearn's
/// `StandardScaler`). A feature whose variance is zero up to rounding (sklearn's
/// `_is_constant_feature` bound: var ≤ N·ε·var + (N·mean·ε)²) gets scale 1, like sklearn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    /// Per-feature mean of the fitted rows.
    pub mean: Vec<f64>,
    /// Per-feature scale: the population std, or 1 for a (near-)constant feature.
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Fits the mean and scale of `rows` (N×d, N ≥ 1), accumulated in f64 like sklearn
    /// (two passes, with the rounding correction of its `_incremental_mean_and_var`).
    pub fn fit(rows: ArrayView2<'_, f32>) -> Result<Self, StatsError> {
        let (n, d) = rows.dim();
        if n == 0 {
            return Err(StatsError::TooFewRows { needed: 1, got: 0 });
        }
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::NonFinite);
        }
        let nf = n as f64;
        let mut mean = vec![0.0f64; d];
        for row in rows.rows() {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64;
            }
        }
        for m in &mut mean {
            *m /= nf;
        }
        let mut correction = vec![0.0f64; d];
        let mut squares = vec![0.0f64; d];
        for row in rows.rows() {
            for (j, v) in row.iter().enumerate() {
                let t = *v as f64 - mean[j];
                correction[j] += t;
                squares[j] += t * t;
            }
        }
        let eps = f64::EPSILON;
        let scale = (0..d)
            .map(|j| {
                let var = (squares[j] - correction[j] * correction[j] / nf) / nf;
                let bound = nf * eps * var + (nf * mean[j] * eps).powi(2);
                if var <= bound {
                    1.0
                } else {
                    var.sqrt()
                }
            })
            .collect();
        Ok(Self { mean, scale })
    }

    /// Standardizes `rows` (M×d, d as fitted): (x − mean)/scale, in f64.
    pub fn transform(&self, rows: ArrayView2<'_, f32>) -> Result<Array2<f64>, StatsError> {
        let d = self.mean.len();
        if rows.ncols() != d {
            return Err(StatsError::Invalid(format!(
                "the standardizer was fitted on {d} features, the rows have {}",
                rows.ncols()
            )));
        }
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::NonFinite);
        }
        Ok(Array2::from_shape_fn(rows.dim(), |(i, j)| {
            (rows[[i, j]] as f64 - self.mean[j]) / self.scale[j]
        }))
    }
}

/// PCA by thin SVD of the centred rows, as `sklearn.decomposition.PCA(svd_solver="full")`
/// computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Per-feature mean of the fitted rows (length d).
    pub mean: Vec<f64>,
    /// The k principal axes as rows (k×d, orthonormal), each sign-fixed so that its entry of
    /// largest magnitude (the first, among exact ties) is positive, like sklearn's
    /// `svd_flip(u_based_decision=False)`.
    pub components: Array2<f64>,
    /// Variance along each kept axis: S²/(N − 1) (length k).
    pub explained_variance: Vec<f64>,
    /// Each kept axis's share of the total variance (length k).
    pub explained_variance_ratio: Vec<f64>,
    /// The variance ratio of every fitted axis, all min(N, d) of them, kept or not: what a
    /// plot of the explained-variance curve needs ([`Pca::cumulative_ratios`] sums it).
    pub all_ratios: Vec<f64>,
}

/// Everything one SVD gives: mean, all min(N, d) sign-fixed axes, their variances and ratios.
struct FullFit {
    mean: Vec<f64>,
    components: Array2<f64>,
    variance: Vec<f64>,
    ratios: Vec<f64>,
}

/// Checks the rows PCA is fitted on: at least 2, at least one feature, finite, not all equal.
fn check_rows(rows: ArrayView2<'_, f64>) -> Result<(), StatsError> {
    let (n, d) = rows.dim();
    if n < 2 {
        return Err(StatsError::TooFewRows { needed: 2, got: n });
    }
    if d == 0 {
        return Err(StatsError::Invalid("PCA needs at least one feature".into()));
    }
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    let first = rows.row(0);
    if rows.rows().into_iter().all(|r| r == first) {
        return Err(StatsError::Invalid(format!(
            "PCA of {n} identical rows: the total variance is zero, there are no principal axes"
        )));
    }
    Ok(())
}

fn full_fit(rows: ArrayView2<'_, f64>) -> Result<FullFit, StatsError> {
    let (n, d) = rows.dim();
    let nf = n as f64;
    let mut mean = vec![0.0f64; d];
    for row in rows.rows() {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v;
        }
    }
    for m in &mut mean {
        *m /= nf;
    }
    let x = Mat::from_fn(n, d, |i, j| rows[[i, j]] - mean[j]);
    let svd = x
        .thin_svd()
        .map_err(|e| StatsError::Invalid(format!("the SVD of the centred rows failed: {e:?}")))?;
    let m = n.min(d);
    let s = svd.S().column_vector();
    let v = svd.V(); // d×m: the axes are its columns.
    let mut components = Array2::<f64>::zeros((m, d));
    for c in 0..m {
        // svd_flip(u_based_decision=False): the sign of the row's first largest |entry|.
        let mut arg = 0;
        for j in 1..d {
            if v[(j, c)].abs() > v[(arg, c)].abs() {
                arg = j;
            }
        }
        let sign = if v[(arg, c)] < 0.0 { -1.0 } else { 1.0 };
        for j in 0..d {
            components[[c, j]] = sign * v[(j, c)];
        }
    }
    let variance: Vec<f64> = (0..m).map(|c| s[c] * s[c] / (nf - 1.0)).collect();
    let total: f64 = variance.iter().sum();
    if !total.is_finite() || components.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    if total <= 0.0 {
        return Err(StatsError::Invalid(
            "PCA: the total variance of the rows is zero".into(),
        ));
    }
    let ratios = variance.iter().map(|v| v / total).collect();
    Ok(FullFit {
        mean,
        components,
        variance,
        ratios,
    })
}

impl Pca {
    /// Fits with `k` components (1 ≤ k ≤ min(N, d)) on `rows` (N×d, N ≥ 2, finite, not all
    /// identical).
    pub fn fit(rows: ArrayView2<'_, f64>, k: usize) -> Result<Self, StatsError> {
        check_rows(rows)?;
        let m = rows.nrows().min(rows.ncols());
        if k == 0 || k > m {
            return Err(StatsError::Invalid(format!(
                "PCA n_components = {k} must be in 1..={m} (min(N, d) of {}×{} rows)",
                rows.nrows(),
                rows.ncols()
            )));
        }
        Ok(Self::keep(full_fit(rows)?, k))
    }

    /// Fits all min(N, d) components, then keeps the fewest whose cumulative explained-variance
    /// ratio reaches `ratio` (0 < ratio ≤ 1; ≥, where sklearn's `PCA(n_components=ratio)`
    /// asks for >, which differs only at exact equality), capped at `max_k` (≥ 1). If
    /// rounding keeps the cumulative ratio below 1, `ratio = 1` keeps all of them.
    pub fn fit_variance(
        rows: ArrayView2<'_, f64>,
        ratio: f64,
        max_k: usize,
    ) -> Result<Self, StatsError> {
        check_rows(rows)?;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(StatsError::Invalid(format!(
                "PCA variance ratio {ratio} must be in (0, 1]"
            )));
        }
        if max_k == 0 {
            return Err(StatsError::Invalid(
                "PCA max components must be at least 1".into(),
            ));
        }
        let fit = full_fit(rows)?;
        let mut cumulative = 0.0;
        let mut k = fit.ratios.len();
        for (i, r) in fit.ratios.iter().enumerate() {
            cumulative += r;
            if cumulative >= ratio {
                k = i + 1;
                break;
            }
        }
        Ok(Self::keep(fit, k.min(max_k)))
    }

    fn keep(fit: FullFit, k: usize) -> Self {
        let components = fit.components.slice(ndarray::s![..k, ..]).to_owned();
        Self {
            mean: fit.mean,
            components,
            explained_variance: fit.variance[..k].to_vec(),
            explained_variance_ratio: fit.ratios[..k].to_vec(),
            all_ratios: fit.ratios,
        }
    }

    /// Number of kept components k.
    pub fn n_components(&self) -> usize {
        self.components.nrows()
    }

    /// Cumulative explained-variance ratio of all fitted components (running sum of
    /// [`Pca::all_ratios`]; the last entry is 1 up to rounding).
    pub fn cumulative_ratios(&self) -> Vec<f64> {
        self.all_ratios
            .iter()
            .scan(0.0, |acc, r| {
                *acc += r;
                Some(*acc)
            })
            .collect()
    }

    /// Projects rows: (x − mean)·componentsᵀ (M×k). Non-finite inputs give non-finite outputs.
    ///
    /// # Panics
    ///
    /// If `rows` does not have d columns; [`Pca::try_transform`] returns an error instead.
    pub fn transform(&self, rows: ArrayView2<'_, f64>) -> Array2<f64> {
        match self.try_transform(rows) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Pca::transform`], with an error for a column count other than the fitted d.
    pub fn try_transform(&self, rows: ArrayView2<'_, f64>) -> Result<Array2<f64>, StatsError> {
        let d = self.mean.len();
        if rows.ncols() != d {
            return Err(StatsError::Invalid(format!(
                "PCA was fitted on {d} features, the rows have {}",
                rows.ncols()
            )));
        }
        let mean = ndarray::ArrayView1::from(&self.mean[..]);
        let centred = &rows - &mean;
        Ok(centred.dot(&self.components.t()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn rows64() -> Array2<f64> {
        array![
            [1.0, 2.0, 0.5],
            [2.0, 1.0, -0.5],
            [3.0, 4.0, 1.5],
            [0.0, -1.0, 2.0],
            [5.0, 3.0, 0.0],
        ]
    }

    #[test]
    fn standardizer_matches_hand_computation() {
        let x = array![[1.0f32, 7.0], [3.0, 7.0], [5.0, 7.0]];
        let s = Standardizer::fit(x.view()).unwrap();
        assert_eq!(s.mean, vec![3.0, 7.0]);
        // Population std of 1, 3, 5 = sqrt(8/3); the constant column gets 1.
        assert!((s.scale[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(s.scale[1], 1.0);
        let z = s.transform(x.view()).unwrap();
        assert!((z[[0, 0]] + (1.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(z.column(1).to_vec(), vec![0.0; 3]);
    }

    #[test]
    fn standardizer_refuses_bad_input() {
        let empty = Array2::<f32>::zeros((0, 3));
        assert_eq!(
            Standardizer::fit(empty.view()),
            Err(StatsError::TooFewRows { needed: 1, got: 0 })
        );
        let nan = array![[1.0f32, f32::NAN], [2.0, 3.0]];
        assert_eq!(Standardizer::fit(nan.view()), Err(StatsError::NonFinite));
        let inf = array![[1.0f32, f32::INFINITY]];
        assert_eq!(Standardizer::fit(inf.view()), Err(StatsError::NonFinite));
        let s = Standardizer::fit(array![[1.0f32, 2.0], [2.0, 3.0]].view()).unwrap();
        assert!(matches!(
            s.transform(array![[1.0f32, 2.0, 3.0]].view()),
            Err(StatsError::Invalid(_))
        ));
        assert_eq!(s.transform(nan.view()).unwrap_err(), StatsError::NonFinite);
        // One row: every feature constant, scale 1.
        let one = Standardizer::fit(array![[4.0f32, -2.0]].view()).unwrap();
        assert_eq!(one.scale, vec![1.0, 1.0]);
    }

    #[test]
    fn pca_is_orthonormal_sign_fixed_and_sums_to_one() {
        let x = rows64();
        let p = Pca::fit(x.view(), 3).unwrap();
        let g = p.components.dot(&p.components.t());
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((g[[i, j]] - want).abs() < 1e-12, "{g}");
            }
        }
        for row in p.components.rows() {
            let max = row.iter().copied().fold(0.0f64, |m, v| m.max(v.abs()));
            let first = row.iter().find(|v| v.abs() == max).unwrap();
            assert!(*first > 0.0);
        }
        let sum: f64 = p.explained_variance_ratio.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert!(p.explained_variance.windows(2).all(|w| w[0] >= w[1]));
        // Total variance (ddof 1) is preserved.
        let total: f64 = (0..3)
            .map(|j| {
                let c = x.column(j);
                let m = c.mean().unwrap();
                c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 4.0
            })
            .sum();
        let ev: f64 = p.explained_variance.iter().sum();
        assert!((ev - total).abs() < 1e-12 * total);
        // The projection's per-axis variance is the explained variance.
        let y = p.transform(x.view());
        for c in 0..3 {
            let var = y.column(c).iter().map(|v| v * v).sum::<f64>() / 4.0;
            assert!((var - p.explained_variance[c]).abs() < 1e-10);
        }
        let cum = p.cumulative_ratios();
        assert!((cum[2] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pca_truncates_and_picks_k_by_variance() {
        let x = rows64();
        let full = Pca::fit(x.view(), 3).unwrap();
        let two = Pca::fit(x.view(), 2).unwrap();
        assert_eq!(two.components.dim(), (2, 3));
        assert_eq!(two.all_ratios, full.all_ratios);
        assert_eq!(two.explained_variance[..], full.explained_variance[..2]);
        let first = full.all_ratios[0];
        let v = Pca::fit_variance(x.view(), first * 0.999, 3).unwrap();
        assert_eq!(v.n_components(), 1);
        let v = Pca::fit_variance(x.view(), first * 1.001, 3).unwrap();
        assert_eq!(v.n_components(), 2);
        let v = Pca::fit_variance(x.view(), 1.0, 3).unwrap();
        assert!(v.n_components() >= 2);
        let v = Pca::fit_variance(x.view(), 1.0, 1).unwrap();
        assert_eq!(v.n_components(), 1);
        assert_eq!(v.all_ratios.len(), 3);
        // max_k above min(N, d) is only a cap.
        let v = Pca::fit_variance(x.view(), 1.0, 100).unwrap();
        assert!(v.n_components() <= 3);
    }

    #[test]
    fn pca_refuses_bad_input_without_panicking() {
        let x = rows64();
        let bad_k = |k| matches!(Pca::fit(x.view(), k), Err(StatsError::Invalid(_)));
        assert!(bad_k(0));
        assert!(bad_k(4)); // min(5, 3) = 3
        let one = array![[1.0, 2.0]];
        assert_eq!(
            Pca::fit(one.view(), 1),
            Err(StatsError::TooFewRows { needed: 2, got: 1 })
        );
        let none = Array2::<f64>::zeros((0, 2));
        assert_eq!(
            Pca::fit_variance(none.view(), 0.9, 2),
            Err(StatsError::TooFewRows { needed: 2, got: 0 })
        );
        let mut nan = rows64();
        nan[[2, 1]] = f64::NAN;
        assert_eq!(Pca::fit(nan.view(), 1), Err(StatsError::NonFinite));
        nan[[2, 1]] = f64::NEG_INFINITY;
        assert_eq!(
            Pca::fit_variance(nan.view(), 0.5, 2),
            Err(StatsError::NonFinite)
        );
        let same = Array2::from_elem((6, 4), 0.3);
        assert!(matches!(
            Pca::fit(same.view(), 1),
            Err(StatsError::Invalid(m)) if m.contains("identical")
        ));
        assert!(matches!(
            Pca::fit_variance(same.view(), 0.9, 2),
            Err(StatsError::Invalid(_))
        ));
        for r in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                Pca::fit_variance(x.view(), r, 2),
                Err(StatsError::Invalid(_))
            ));
        }
        assert!(matches!(
            Pca::fit_variance(x.view(), 0.9, 0),
            Err(StatsError::Invalid(_))
        ));
        let empty_cols = Array2::<f64>::zeros((3, 0));
        assert!(matches!(
            Pca::fit(empty_cols.view(), 1),
            Err(StatsError::Invalid(_))
        ));
        // Squares overflow: an error, not inf ratios.
        let huge = array![[1e300, 0.0], [-1e300, 1.0], [0.0, 2.0]];
        assert!(Pca::fit(huge.view(), 1).is_err());
        let p = Pca::fit(x.view(), 2).unwrap();
        assert!(matches!(
            p.try_transform(array![[1.0, 2.0]].view()),
            Err(StatsError::Invalid(_))
        ));
    }

    #[test]
    fn pca_of_two_rows_and_of_more_features_than_rows() {
        let x = array![[1.0, 2.0, 3.0], [3.0, 2.0, 0.0]];
        let p = Pca::fit(x.view(), 2).unwrap();
        // One axis carries everything: ±(2, 0, −3)/√13, sign-fixed so the −3 turns positive.
        let s = 13f64.sqrt();
        assert!(
            (p.components[[0, 0]] + 2.0 / s).abs() < 1e-12,
            "{}",
            p.components
        );
        assert!(p.components[[0, 1]].abs() < 1e-12);
        assert!((p.components[[0, 2]] - 3.0 / s).abs() < 1e-12);
        // Centred rows ±(1, 0, −1.5): S² = 6.5, over N − 1 = 1.
        assert!((p.explained_variance[0] - 6.5).abs() < 1e-12);
        assert!(p.explained_variance[1].abs() < 1e-12);
        assert!((p.explained_variance_ratio[0] - 1.0).abs() < 1e-12);
    }
}
