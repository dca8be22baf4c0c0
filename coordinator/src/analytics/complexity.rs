//! Which complexity class a benchmark's measurements follow, and how sure we are.
//!
//! # Method
//!
//! Input: samples `(n, value)`, several repetitions per input size; the value is CPU
//! seconds (or milliseconds, any unit) or bytes. Repetitions far from their size's median
//! (preempted runs) are pulled in to 3 robust standard deviations ([`winsorize`]). For
//! each candidate class f ∈ {1, log n, n, n log n, n², n³, 2ⁿ} we fit `value = a·f(n) + b`
//! with `a, b ≥ 0` by weighted least squares, where every sample is weighted by
//! `1 / median(value at its size)²`: the residuals are *relative* ones. Classes whose f is
//! not finite at the sizes (2ⁿ at n = 5000) are skipped. The classes are then compared by
//! BIC, `N·ln(RSS/N)/ĉ + k·ln(N/ĉ)` (k = 1 for O(1), 2 otherwise; ĉ ≥ 1 the overdispersion
//! measured from the repetitions, see [`overdispersion`]), turned into posterior weights
//! `prior·exp(-ΔBIC/2)` normalised over the classes (O(1) has prior ½, see
//! [`CONSTANT_PRIOR`]). The confidence is the
//! best class's weight minus the runner-up's: near 0 when two classes fit alike.
//!
//! # Why this and not the seed's normalised R²
//!
//! The seed (`seed_baseline` below) scales f(n) by one factor so its mean matches the
//! data's and keeps the class with the largest R². That:
//! - has **no intercept**: interpreter start-up, harness and timer overhead are a constant
//!   added to every size, which flattens the curve: with 30 ms of start-up the seed calls
//!   n log n "O(n)" (every time, in the tests). Here `b` takes the constant, so `a·f(n)`
//!   sees only the growth;
//! - on a **constant** function every R² is 0 and it answers its default, "O(n)";
//! - fits on **absolute** residuals, so the largest size (the largest value) decides
//!   everything and the small sizes — where n and n log n differ in *shape* — count for
//!   nothing. Relative residuals weigh every size alike, which is also what the noise of
//!   timing is (a few per cent of the value, not a fixed number of milliseconds);
//! - uses **one sample per size**; here every repetition is a sample, so the noise is
//!   measured rather than mistaken for curvature, and the per-size median sets the weights
//!   (a median, so one preempted run does not move them);
//! - turns R² into a "confidence", which is high for every class on smooth monotone data
//!   (n and n log n both reach R² > 0.99). The weights compare the classes *with each
//!   other*: when the runner-up fits almost as well, the confidence is near 0.
//!
//! All classes get the same weights, the same data and the same penalty, so their scores
//! are comparable; the constraint `a, b ≥ 0` is physics (time and bytes do not shrink as n
//! grows, start-up is not negative) and stops a wrong curve from bending itself into shape
//! with a negative intercept (n log n ≈ c·n − d over a short range).

/// A candidate complexity class, in order of growth (ties go to the simpler class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Constant,
    Logarithmic,
    Linear,
    Linearithmic,
    Quadratic,
    Cubic,
    Exponential,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Constant,
        Class::Logarithmic,
        Class::Linear,
        Class::Linearithmic,
        Class::Quadratic,
        Class::Cubic,
        Class::Exponential,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Constant => "O(1)",
            Class::Logarithmic => "O(log n)",
            Class::Linear => "O(n)",
            Class::Linearithmic => "O(n log n)",
            Class::Quadratic => "O(n²)",
            Class::Cubic => "O(n³)",
            Class::Exponential => "O(2ⁿ)",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// f(n). The base of the logarithm does not matter: `a` absorbs it.
    pub fn f(self, n: f64) -> f64 {
        match self {
            Class::Constant => 1.0,
            Class::Logarithmic => n.ln(),
            Class::Linear => n,
            Class::Linearithmic => n * n.ln(),
            Class::Quadratic => n * n,
            Class::Cubic => n * n * n,
            Class::Exponential => n.exp2(),
        }
    }

    /// Free parameters of the model: O(1)'s `a·1 + b` is one constant.
    fn parameters(self) -> usize {
        if self == Class::Constant { 1 } else { 2 }
    }
}

/// One measurement: input size and value (time or bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub n: f64,
    pub value: f64,
}

/// One class fitted to the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassFit {
    pub class: Class,
    /// value ≈ a·f(n) + b, in the samples' unit.
    pub a: f64,
    pub b: f64,
    /// Ordinary R² of the fitted curve on the raw values (for display, not for choosing).
    pub r_squared: f64,
    /// Weighted (relative) residual sum of squares.
    pub rss: f64,
    /// BIC on the relative residuals, the likelihood part divided by the overdispersion
    /// (see [`overdispersion`]); lower is better.
    pub score: f64,
    /// Posterior weight among all fitted classes, in [0, 1] (see [`assign_weights`]).
    pub weight: f64,
    /// Sizes left out of this class's fit as outliers (see [`TRIM_PER_SIZES`]).
    pub trimmed: Vec<f64>,
    /// Samples the fit kept (all but the trimmed sizes').
    kept: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub best: ClassFit,
    pub runner_up: Option<ClassFit>,
    /// The best class's weight minus the runner-up's: 0 when two classes tie, near 1 when
    /// one class takes all the weight.
    pub confidence: f64,
    /// Lack-of-fit variance of the best class over the repetitions' own variance (≥ 1; 1
    /// when there are no repetitions to measure it with).
    pub overdispersion: f64,
    /// Median value at the largest size over the median at the smallest; None if that is 0.
    pub growth: Option<f64>,
    pub samples: usize,
    pub sizes: usize,
}

/// One line on the method, for clients that show where the answer comes from.
pub const METHOD: &str = "least squares of a*f(n)+b (a, b >= 0) on relative residuals of all repetitions; \
classes compared by BIC corrected for overdispersion; confidence = posterior weight of the best class minus the runner-up's";

/// Relative residuals below this are measurement resolution, not fit: stops a perfect
/// fit's ln(0) from making the confidence meaningless.
const MIN_RELATIVE_RMS: f64 = 1e-6;

/// Fits every class and picks one; None without at least 3 usable samples at 2 sizes.
pub fn analyze(samples: &[Sample]) -> Option<Analysis> {
    analyze_with_resolution(samples, 0.0)
}

/// [`analyze`] for measurements that cannot tell values below `resolution` apart (in the
/// samples' unit; e.g. the cost of an empty call, which was subtracted from each value):
/// no size's weight is above that of a median of `resolution`.
///
/// Why: a function that takes a few nanoseconds at the smallest sizes measures 0 to a few
/// ns after the empty call is taken off; weighted as relative residuals, that noise would
/// count as much as a 30 % error at the largest size.
pub fn analyze_with_resolution(samples: &[Sample], resolution: f64) -> Option<Analysis> {
    let (fits, c_hat, medians, count) = fit_all(samples, resolution)?;
    conclude(fits, c_hat, &medians, count)
}

/// Memory's fit: [`analyze_with_resolution`] with `noise` (bytes) as the resolution, and
/// every class whose fitted curve grows by no more than `noise` across the measured
/// sizes counted as O(1).
///
/// Why: an in-place sort allocates nothing that depends on n, but the measure is not
/// exactly flat (an interpreter's integer objects above its small-int cache, a heap's
/// bookkeeping): a few dozen bytes that step up once. A growing class fits such a step
/// better than a constant and would win on it, yet what it predicts — growth below what
/// the measure can resolve — is what O(1) means. Their weights go to O(1), so the
/// confidence says how much of the evidence is for "does not grow" against the best class
/// that does, and stays low when a class with real growth fits almost as well.
pub fn analyze_memory(samples: &[Sample], noise: f64) -> Option<Analysis> {
    let (mut fits, c_hat, medians, count) = fit_all(samples, noise)?;
    let (low, high) = (medians.first()?.0, medians.last()?.0);
    let flat = |f: &ClassFit| f.class == Class::Constant || f.a * (f.class.f(high) - f.class.f(low)) <= noise;
    let pooled: f64 = fits.iter().filter(|f| flat(f)).map(|f| f.weight).sum();
    for fit in &mut fits {
        if fit.class == Class::Constant {
            fit.weight = pooled;
        } else if flat(fit) {
            fit.weight = 0.0;
        }
    }
    conclude(fits, c_hat, &medians, count)
}

type Fitted = (Vec<ClassFit>, f64, Vec<(f64, f64)>, usize);

/// Every class fitted and weighted, with the overdispersion, the per-size medians and the
/// number of samples used.
fn fit_all(samples: &[Sample], resolution: f64) -> Option<Fitted> {
    let clean: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.n.is_finite() && s.n >= 1.0 && s.value.is_finite() && s.value >= 0.0)
        .collect();
    let medians = size_medians(&clean);
    if clean.len() < 3 || medians.len() < 2 {
        return None;
    }
    let clean = winsorize(&clean, &medians);
    let weights = relative_weights(&clean, &medians, resolution);
    let trim = medians.len() / TRIM_PER_SIZES;
    let mut fits: Vec<ClassFit> =
        Class::ALL.iter().filter_map(|&c| fit_trimmed(c, &clean, &weights, trim)).collect();
    let count = clean.len() as f64;
    // The overdispersion is measured against the class that fits best before tempering,
    // on the samples that class kept.
    let raw_best = fits.iter().min_by(|x, y| bic(x, count, 1.0).total_cmp(&bic(y, count, 1.0)))?;
    let (kept, kept_weights): (Vec<Sample>, Vec<f64>) =
        clean.iter().zip(&weights).filter(|(s, _)| !raw_best.trimmed.contains(&s.n)).map(|(s, w)| (*s, *w)).unzip();
    let c_hat = overdispersion(&kept, &kept_weights, raw_best, medians.len() - raw_best.trimmed.len());
    for fit in &mut fits {
        fit.score = bic(fit, count, c_hat);
    }
    assign_weights(&mut fits);
    Some((fits, c_hat, medians, clean.len()))
}

/// The best class by weight and its margin over the runner-up.
fn conclude(mut fits: Vec<ClassFit>, c_hat: f64, medians: &[(f64, f64)], samples: usize) -> Option<Analysis> {
    // Stable: among equal weights the simpler class (earlier in ALL) stays first.
    fits.sort_by(|x, y| y.weight.total_cmp(&x.weight));
    let mut ranked = fits.into_iter();
    let best = ranked.next()?;
    let runner_up = ranked.next();
    let (first, last) = (medians.first()?.1, medians.last()?.1);
    Some(Analysis {
        confidence: (best.weight - runner_up.as_ref().map_or(0.0, |r| r.weight)).clamp(0.0, 1.0),
        overdispersion: c_hat,
        best,
        runner_up,
        growth: (first > 0.0).then(|| last / first),
        samples,
        sizes: medians.len(),
    })
}

/// `N·ln(RSS/N)/ĉ + k·ln(N/ĉ)`: BIC with the likelihood divided by the overdispersion ĉ
/// (the quasi-likelihood correction of QAIC) and N/ĉ as the effective sample size. With
/// ĉ = 1 it is plain BIC; with ĉ = N/sizes, BIC of one observation per size.
///
/// A trimmed fit's residuals are those of the samples it kept, scaled to all samples
/// (`count` times their mean square), so classes that kept different numbers of samples
/// are scored on the same footing.
fn bic(fit: &ClassFit, count: f64, c_hat: f64) -> f64 {
    let kept = fit.kept.max(1) as f64;
    let mean_square = (fit.rss / kept).max(MIN_RELATIVE_RMS * MIN_RELATIVE_RMS);
    count * mean_square.ln() / c_hat + fit.class.parameters() as f64 * (count / c_hat).ln()
}

/// One size in this many is left out of each class's fit: the worst-fitting ones.
///
/// Why: a JIT or a garbage collector now and then puts a whole size off (every repetition
/// of it; seen in JavaScript: one size 20× slower than the next larger one), which the
/// per-size winsorizing cannot see and which, with relative residuals, outweighs the real
/// difference between the classes. Least trimmed squares drops the same number of sizes
/// for every class, each class its own worst, so the comparison stays fair; with fewer
/// than 10 sizes nothing is trimmed.
pub const TRIM_PER_SIZES: usize = 10;

/// [`fit_class`] on all samples, then again without the `trim` sizes it fits worst (by
/// the mean weighted squared residual of their samples).
fn fit_trimmed(class: Class, samples: &[Sample], weights: &[f64], trim: usize) -> Option<ClassFit> {
    let full = fit_class(class, samples, weights)?;
    if trim == 0 {
        return Some(full);
    }
    let mut per_size: Vec<(f64, f64, usize)> = Vec::new();
    for (s, w) in samples.iter().zip(weights) {
        let r = w * (s.value - (full.a * class.f(s.n) + full.b)).powi(2);
        match per_size.iter_mut().find(|p| p.0 == s.n) {
            Some(p) => {
                p.1 += r;
                p.2 += 1;
            }
            None => per_size.push((s.n, r, 1)),
        }
    }
    per_size.sort_by(|x, y| (y.1 / y.2 as f64).total_cmp(&(x.1 / x.2 as f64)));
    let dropped: Vec<f64> = per_size.iter().take(trim).map(|p| p.0).collect();
    let (kept, kept_weights): (Vec<Sample>, Vec<f64>) =
        samples.iter().zip(weights).filter(|(s, _)| !dropped.contains(&s.n)).map(|(s, w)| (*s, *w)).unzip();
    let mut fit = fit_class(class, &kept, &kept_weights)?;
    fit.trimmed = dropped;
    Some(fit)
}

/// ĉ: the lack-of-fit mean square of the best class over the pure-error mean square of
/// the repetitions (the F statistic of the lack-of-fit test), at least 1.
///
/// Why: repetitions run back to back share whatever is systematic at their size (caches,
/// a JIT tier, the allocator), so they are not the independent samples the likelihood
/// assumes, and counting them as such would make the confidence too high. When the best
/// curve misses the per-size medians by more than the repetitions scatter — systematic
/// effects, or a true class that is none of the candidates (n^1.5) — ĉ > 1 flattens the
/// differences between the classes and the confidence drops, as it should. It is capped
/// at repetitions per size (N/sizes): at worst the repetitions of a size are one
/// observation, never less — uncapped, a large ĉ would shrink every likelihood difference
/// below the parameter penalty and hand the win to O(1) on data that plainly grows.
/// Without repetitions (or with no residual degrees of freedom) it cannot be measured: 1.
fn overdispersion(samples: &[Sample], weights: &[f64], best: &ClassFit, sizes: usize) -> f64 {
    let count = samples.len();
    let k = best.class.parameters();
    if count <= sizes || sizes <= k {
        return 1.0;
    }
    // Weights are constant within a size, so the weighted mean per size is the plain mean.
    let mut pure = 0.0;
    let mut seen: Vec<f64> = Vec::new();
    for s in samples {
        if seen.contains(&s.n) {
            continue;
        }
        seen.push(s.n);
        let group: Vec<(f64, f64)> =
            samples.iter().zip(weights).filter(|(t, _)| t.n == s.n).map(|(t, w)| (t.value, *w)).collect();
        let mean = group.iter().map(|g| g.0).sum::<f64>() / group.len() as f64;
        pure += group.iter().map(|(v, w)| w * (v - mean).powi(2)).sum::<f64>();
    }
    let pure_ms = pure / (count - sizes) as f64;
    let lack_ms = (best.rss - pure).max(0.0) / (sizes - k) as f64;
    let cap = count as f64 / sizes as f64;
    if pure_ms > 0.0 && lack_ms.is_finite() { (lack_ms / pure_ms).clamp(1.0, cap) } else { 1.0 }
}

/// Outliers pulled in to 3 robust standard deviations of their size's median.
///
/// Why: on a shared machine one repetition now and then is preempted and takes several
/// times as long. With relative residuals, a single 10× sample at a small size outweighs
/// every real difference between the classes, and O(1) wins on its smaller penalty (seen
/// on a real benchmark). The spread is the pooled median absolute relative deviation of
/// the sizes that have repetitions (a size's own median excluded, it deviates by 0 by
/// construction), so one outlier does not widen its own limit. A size run once cannot be
/// checked.
fn winsorize(samples: &[Sample], medians: &[(f64, f64)]) -> Vec<Sample> {
    let median_of = |n: f64| medians.iter().find(|m| m.0 == n).map_or(0.0, |m| m.1);
    let repeated = |n: f64| samples.iter().filter(|s| s.n == n).count() > 1;
    let mut deviations: Vec<f64> = samples
        .iter()
        .filter(|s| repeated(s.n) && median_of(s.n) > 0.0)
        .map(|s| (s.value / median_of(s.n) - 1.0).abs())
        .filter(|d| *d > 0.0)
        .collect();
    if deviations.len() < 3 {
        return samples.to_vec();
    }
    deviations.sort_by(f64::total_cmp);
    let limit = 3.0 * 1.4826 * deviations[deviations.len() / 2];
    samples
        .iter()
        .map(|s| {
            let m = median_of(s.n);
            if m > 0.0 && repeated(s.n) {
                Sample { n: s.n, value: m * (1.0 + (s.value / m - 1.0).clamp(-limit, limit)) }
            } else {
                *s
            }
        })
        .collect()
}

/// (n, median value) per distinct size, by increasing n.
fn size_medians(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<Sample> = samples.to_vec();
    sorted.sort_by(|x, y| x.n.total_cmp(&y.n).then(x.value.total_cmp(&y.value)));
    let mut out = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let n = sorted[start].n;
        let end = sorted[start..].iter().position(|s| s.n != n).map_or(sorted.len(), |k| start + k);
        let group = &sorted[start..end];
        let mid = group.len() / 2;
        let median =
            if group.len() % 2 == 1 { group[mid].value } else { (group[mid - 1].value + group[mid].value) / 2.0 };
        out.push((n, median));
        start = end;
    }
    out
}

/// 1 / (median at the sample's size)², so a residual counts as a fraction of its size's
/// typical value. Floored at 10⁻⁴ of the largest median: a size whose value is at the
/// timer's resolution must not get an unbounded weight.
fn relative_weights(samples: &[Sample], medians: &[(f64, f64)], resolution: f64) -> Vec<f64> {
    let top = medians.iter().map(|m| m.1).fold(0.0, f64::max);
    if top <= 0.0 {
        // All zero: nothing to be relative to; any weight gives the same (zero) residuals.
        return vec![1.0; samples.len()];
    }
    let floor = (top * 1e-4).max(if resolution.is_finite() { resolution } else { 0.0 });
    samples
        .iter()
        .map(|s| {
            let m = medians.iter().find(|m| m.0 == s.n).map_or(top, |m| m.1);
            1.0 / m.max(floor).powi(2)
        })
        .collect()
}

fn fit_class(class: Class, samples: &[Sample], weights: &[f64]) -> Option<ClassFit> {
    let f: Vec<f64> = samples.iter().map(|s| class.f(s.n)).collect();
    if f.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let y: Vec<f64> = samples.iter().map(|s| s.value).collect();
    let (a, b) = if class == Class::Constant {
        (0.0, weighted_mean(&y, weights))
    } else {
        nonnegative_line(&f, &y, weights)?
    };
    let predicted: Vec<f64> = f.iter().map(|fi| a * fi + b).collect();
    let rss: f64 = y.iter().zip(&predicted).zip(weights).map(|((yi, pi), wi)| wi * (yi - pi).powi(2)).sum();
    if !rss.is_finite() {
        return None;
    }
    Some(ClassFit {
        class,
        a,
        b,
        r_squared: r_squared(&y, &predicted),
        rss,
        score: 0.0,
        weight: 0.0,
        trimmed: Vec::new(),
        kept: samples.len(),
    })
}

fn weighted_mean(y: &[f64], w: &[f64]) -> f64 {
    let sw: f64 = w.iter().sum();
    if sw > 0.0 { y.iter().zip(w).map(|(yi, wi)| yi * wi).sum::<f64>() / sw } else { 0.0 }
}

/// Weighted least squares of y = a·f + b with a, b ≥ 0. The problem is a convex quadratic
/// in two variables, so its minimum is the unconstrained one if feasible, else on an edge
/// (a = 0 or b = 0): try those and keep the best. f is scaled to at most 1 first, so 2ⁿ's
/// huge values do not overflow the sums of squares.
fn nonnegative_line(f: &[f64], y: &[f64], w: &[f64]) -> Option<(f64, f64)> {
    let scale = f.iter().copied().fold(0.0, f64::max);
    if scale <= 0.0 {
        return None;
    }
    let g: Vec<f64> = f.iter().map(|v| v / scale).collect();
    let sum = |h: &dyn Fn(usize) -> f64| (0..g.len()).map(|i| w[i] * h(i)).sum::<f64>();
    let (sw, sg, sy) = (sum(&|_| 1.0), sum(&|i| g[i]), sum(&|i| y[i]));
    let (sgg, sgy) = (sum(&|i| g[i] * g[i]), sum(&|i| g[i] * y[i]));
    let mut candidates = vec![(0.0, if sw > 0.0 { sy / sw } else { 0.0 })];
    if sgg > 0.0 {
        candidates.push(((sgy / sgg).max(0.0), 0.0));
    }
    let det = sw * sgg - sg * sg;
    if det > 1e-12 * sw * sgg {
        let a = (sw * sgy - sg * sy) / det;
        let b = (sgg * sy - sg * sgy) / det;
        if a >= 0.0 && b >= 0.0 {
            candidates.push((a, b));
        }
    }
    let rss = |(a, b): (f64, f64)| (0..g.len()).map(|i| w[i] * (y[i] - a * g[i] - b).powi(2)).sum::<f64>();
    let (a, b) = candidates.into_iter().filter(|c| rss(*c).is_finite()).min_by(|x, y| rss(*x).total_cmp(&rss(*y)))?;
    Some((a / scale, b))
}

fn r_squared(y: &[f64], predicted: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = y.iter().zip(predicted).map(|(v, p)| (v - p).powi(2)).sum();
    if ss_tot > 0.0 { (1.0 - ss_res / ss_tot).max(0.0) } else if ss_res == 0.0 { 1.0 } else { 0.0 }
}

/// Prior probability of O(1); the growing classes share the rest equally.
///
/// Why not 1/7 each: "does it grow at all?" is one question, and with equal priors the six
/// growing classes get six chances to fit the noise of a constant-time function (one of
/// them beats O(1)'s BIC about one time in twenty). Splitting the prior ½ / ½ asks that
/// question once; a class that really grows wins by hundreds of BIC units anyway.
const CONSTANT_PRIOR: f64 = 0.5;

/// prior·exp(-Δscore/2), normalised: each class's posterior weight among the candidates.
fn assign_weights(fits: &mut [ClassFit]) {
    let growing = fits.iter().filter(|f| f.class != Class::Constant).count().max(1) as f64;
    let has_constant = fits.iter().any(|f| f.class == Class::Constant);
    let prior = |c: Class| match (c == Class::Constant, has_constant) {
        (true, _) => CONSTANT_PRIOR,
        (false, true) => (1.0 - CONSTANT_PRIOR) / growing,
        (false, false) => 1.0 / growing,
    };
    let min = fits.iter().map(|f| f.score).fold(f64::INFINITY, f64::min);
    let raw: Vec<f64> = fits.iter().map(|f| prior(f.class) * (-(f.score - min) / 2.0).exp()).collect();
    let total: f64 = raw.iter().sum();
    for (fit, r) in fits.iter_mut().zip(raw) {
        fit.weight = if total > 0.0 { r / total } else { 0.0 };
    }
}

/// The `complexityAnalysis` object of BENCHMARK_COMPLETED (docs/websocket.md). Without
/// enough data, the seed's answer for that case: "Unknown" with confidence 0.
pub fn to_json(analysis: Option<&Analysis>) -> serde_json::Value {
    let Some(an) = analysis else {
        return serde_json::json!({
            "bestFit": "Unknown", "confidence": 0.0, "rSquared": 0.0, "growth": null,
            "coefficients": null, "runnerUp": null, "method": METHOD,
        });
    };
    serde_json::json!({
        "bestFit": an.best.class.name(),
        "confidence": an.confidence,
        "rSquared": an.best.r_squared,
        "growth": an.growth,
        "coefficients": { "a": an.best.a, "b": an.best.b },
        "weight": an.best.weight,
        "score": an.best.score,
        "runnerUp": an.runner_up.as_ref().map(|r| serde_json::json!({
            "fit": r.class.name(), "weight": r.weight, "score": r.score, "rSquared": r.r_squared,
        })),
        "overdispersion": an.overdispersion,
        "outlierSizes": an.best.trimmed,
        "samples": an.samples,
        "sizes": an.sizes,
        "method": METHOD,
    })
}

/// The seed's `analyzeComplexity`, kept to measure ours against: f(n) scaled by
/// mean(value)/mean(f), the class with the largest R² wins (O(n) if none is above 0),
/// "Unknown" under 3 samples. Its classes lack O(n³). Returns the class name and the R²
/// (the seed's confidence is that R² in per cent).
pub fn seed_baseline(samples: &[Sample]) -> (&'static str, f64) {
    if samples.len() < 3 {
        return ("Unknown", 0.0);
    }
    let seed_classes = [
        Class::Constant,
        Class::Logarithmic,
        Class::Linear,
        Class::Linearithmic,
        Class::Quadratic,
        Class::Exponential,
    ];
    let mut best = (Class::Linear.name(), 0.0);
    for class in seed_classes {
        let r2 = seed_r_squared(samples, class);
        if r2 > best.1 {
            best = (class.name(), r2);
        }
    }
    best
}

fn seed_r_squared(samples: &[Sample], class: Class) -> f64 {
    let count = samples.len() as f64;
    let predictions: Vec<f64> = samples.iter().map(|s| class.f(s.n)).collect();
    let actual_mean = samples.iter().map(|s| s.value).sum::<f64>() / count;
    let scale = actual_mean / (predictions.iter().sum::<f64>() / count);
    let ss_res: f64 = samples.iter().zip(&predictions).map(|(s, p)| (s.value - p * scale).powi(2)).sum();
    let ss_tot: f64 = samples.iter().map(|s| (s.value - actual_mean).powi(2)).sum();
    // JavaScript's Math.max(0, NaN) is NaN, which never beats the best: same as 0 here.
    let r2 = if ss_tot == 0.0 { 0.0 } else { 1.0 - ss_res / ss_tot };
    if r2.is_finite() { r2.max(0.0) } else { 0.0 }
}

#[cfg(test)]
#[path = "complexity_tests.rs"]
mod tests;
