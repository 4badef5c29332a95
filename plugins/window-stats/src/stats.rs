//! The statistics of one window, in plain Rust with no WebAssembly or SDK dependency so that
//! it is unit-tested natively and reused by the engine's benchmark (`#[path]` include).

/// One statistic the plugin can emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Arithmetic mean.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Median (50th percentile).
    P50,
    /// 95th percentile.
    P95,
}

impl Stat {
    /// Every statistic, in output order.
    pub const ALL: [Stat; 5] = [Stat::Mean, Stat::Min, Stat::Max, Stat::P50, Stat::P95];

    /// The name used in the config and in the metric suffix (`_window_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Stat::Mean => "mean",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::P50 => "p50",
            Stat::P95 => "p95",
        }
    }

    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Stat> {
        Stat::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The statistics of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Summary {
    /// The value of one statistic.
    pub fn get(&self, stat: Stat) -> f64 {
        match stat {
            Stat::Mean => self.mean,
            Stat::Min => self.min,
            Stat::Max => self.max,
            Stat::P50 => self.p50,
            Stat::P95 => self.p95,
        }
    }
}

/// Summarises `values`, ignoring NaN and infinite values (they cannot be ordered or
/// averaged meaningfully). `None` when no finite value is left.
pub fn summarize(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
    let mut sorted: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_unstable_by(f64::total_cmp);
    // Sum in sorted order: no overflow to infinity for ordinary metric values, and the
    // result does not depend on the input order.
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    Some(Summary {
        mean,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        p50: percentile_sorted(&sorted, 0.50),
        p95: percentile_sorted(&sorted, 0.95),
    })
}

/// The `q`-quantile (0 ≤ q ≤ 1) of ascending `sorted` values by **linear interpolation
/// between the closest ranks**: the rank is `h = q·(n−1)` and the result is
/// `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`. This is Hyndman & Fan type 7, the default of
/// NumPy (`linear`), R and Excel's `PERCENTILE.INC`. NaN for an empty slice.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_window() {
        // 1..=10 shuffled: mean 5.5, median 5.5, p95 at rank 8.55 → 9 + 0.55·1 = 9.55.
        let s = summarize([7.0, 3.0, 10.0, 1.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]).unwrap();
        assert_eq!(s.mean, 5.5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert_eq!(s.p50, 5.5);
        assert!((s.p95 - 9.55).abs() < 1e-12, "{}", s.p95);
    }

    #[test]
    fn matches_numpy_linear() {
        // numpy.percentile([1, 2, 4, 8, 16], [50, 95]) == [4.0, 14.4]
        let sorted = [1.0, 2.0, 4.0, 8.0, 16.0];
        assert_eq!(percentile_sorted(&sorted, 0.5), 4.0);
        assert!((percentile_sorted(&sorted, 0.95) - 14.4).abs() < 1e-12);
        assert_eq!(percentile_sorted(&sorted, 0.0), 1.0);
        assert_eq!(percentile_sorted(&sorted, 1.0), 16.0);
    }

    #[test]
    fn single_point_and_empty() {
        let s = summarize([42.0]).unwrap();
        assert_eq!(
            (s.mean, s.min, s.max, s.p50, s.p95),
            (42.0, 42.0, 42.0, 42.0, 42.0)
        );
        assert!(summarize([]).is_none());
        assert!(summarize([f64::NAN, f64::INFINITY]).is_none());
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let s = summarize([1.0, f64::NAN, 3.0]).unwrap();
        assert_eq!(s.mean, 2.0);
        assert_eq!(s.max, 3.0);
    }

    #[test]
    fn stat_names_round_trip() {
        for s in Stat::ALL {
            assert_eq!(Stat::parse(s.name()), Some(s));
        }
        assert_eq!(Stat::parse("p99"), None);
    }
}
