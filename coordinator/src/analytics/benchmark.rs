//! How a benchmark is run: which input sizes, which inputs, and what each size's
//! measurements become for the fit.
//!
//! Sizes form a geometric series (ratio √2) from [`FIRST_SIZE`] to the input kind's
//! largest size, across at least two orders of magnitude; every size runs as one sandbox
//! run in which the harness repeats the call ([`REPETITIONS`] batches, within
//! [`SIZE_BUDGET_MS`] of CPU). A size whose call alone takes more than a third of the
//! budget (or that hits the run's limit) is the last: the series stops there, so a
//! quadratic function stops near n = 1500 in Python and an exponential one near n = 20,
//! while a logarithmic one runs to the largest size. The whole benchmark is bounded by
//! sizes × (budget + interpreter start-up).

use serde_json::{Value, json};

use super::complexity::{self, Sample};

/// The harness's batches per size; every batch is one sample of the fit.
pub const REPETITIONS: u32 = 7;
/// CPU the harness may spend on one size's repetitions.
pub const SIZE_BUDGET_MS: u32 = 400;
/// A call longer than this ends the series after its size (fewer than three repetitions
/// would fit in the budget at the next size).
pub const STOP_CALL_NS: u64 = SIZE_BUDGET_MS as u64 * 1_000_000 / 3;
pub const FIRST_SIZE: usize = 4;

/// The shape of a benchmark's input, from the message's `inputKind`, else the catalog's
/// category of the algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `[arr]`: n random integers in [0, 10⁶).
    Array,
    /// `[nums, target]`: n distinct sorted integers and one of them.
    SortedArray,
    /// `[s]`: n random lowercase letters.
    String,
    /// `[n, edges]`: a random graph of n vertices and 2n edges `[u, v]` (a path through
    /// all vertices, so it is connected, plus random edges).
    Graph,
    /// `[n]`.
    Number,
    /// The seed's `generateTestData` (named arguments), for the seed's own algorithm names.
    Seed,
}

impl InputKind {
    pub fn parse(name: &str) -> Option<InputKind> {
        Some(match name {
            "array" => InputKind::Array,
            "sorted_array" | "sortedArray" => InputKind::SortedArray,
            "string" => InputKind::String,
            "graph" => InputKind::Graph,
            "number" => InputKind::Number,
            "seed" => InputKind::Seed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            InputKind::Array => "array",
            InputKind::SortedArray => "sorted_array",
            InputKind::String => "string",
            InputKind::Graph => "graph",
            InputKind::Number => "number",
            InputKind::Seed => "seed",
        }
    }

    /// From the catalog's category (coordinator/catalog/*/meta.toml): what its algorithms
    /// take. Unknown categories get an array, the commonest input.
    pub fn for_category(category: &str) -> InputKind {
        match category {
            "SEARCHING" => InputKind::SortedArray,
            "STRINGS" => InputKind::String,
            "GRAPHS" => InputKind::Graph,
            "MATH" | "BIT_MANIPULATION" => InputKind::Number,
            _ => InputKind::Array,
        }
    }

    /// Largest size: inputs stay under ~1.5 MB of JSON (the whole series under 16 MB);
    /// a number costs nothing to send, so it goes further.
    pub fn max_size(self) -> usize {
        match self {
            InputKind::Number => 1 << 22,
            InputKind::String => 1 << 19,
            InputKind::Graph => 1 << 15,
            InputKind::Seed | InputKind::Array | InputKind::SortedArray => 1 << 17,
        }
    }
}

/// A generator program supplied with an algorithm (the shipped catalog's
/// `generator.<ext>`) or with the benchmark request: run by the agent in a sandbox of its
/// own, once per size, it reads `n m seed` and prints the JSON of the call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorSource {
    /// A language id of languages.toml.
    pub language: String,
    pub source: String,
}

/// Largest size of a benchmark with a generator, unless the request asks for less: as
/// the built-in arrays' (the generator's output is capped on the agent besides).
pub const GENERATOR_MAX_SIZE: usize = 1 << 17;
/// `m` handed to a generator: as many edges per vertex as the built-in graphs have.
pub const GENERATOR_EDGES_PER_VERTEX: usize = 2;

impl GeneratorSource {
    /// The generator's stdin at size n.
    pub fn stdin(n: usize, seed: u64) -> String {
        format!("{n} {} {seed}\n", n.saturating_mul(GENERATOR_EDGES_PER_VERTEX))
    }

    /// What stored runs record as their input kind: two runs with the same name and seed
    /// had the same inputs (`/api/analytics/compare` checks exactly that).
    pub fn kind_name(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.language.as_bytes());
        h.update([0]);
        h.update(self.source.as_bytes());
        let digest = h.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("generator:{hex}")
    }
}

/// FIRST_SIZE·√2^k up to `max`, rounded, without repeats: 4, 6, 8, 11, 16, 23, 32, …
pub fn sizes(first: usize, max: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut x = first.max(1) as f64;
    while x.round() as usize <= max {
        let n = x.round() as usize;
        if out.last() != Some(&n) {
            out.push(n);
        }
        x *= std::f64::consts::SQRT_2;
    }
    out
}

/// Deterministic pseudo-random numbers (SplitMix64): the same seed gives the same inputs
/// on every coordinator, so two solutions and two runs see the same data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, n: usize) -> Rng {
        Rng(seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

/// The arguments of the call at size n.
pub fn generate(kind: InputKind, algorithm: &str, n: usize, seed: u64) -> Value {
    let mut rng = Rng::new(seed, n);
    match kind {
        InputKind::Array => json!([(0..n).map(|_| rng.below(1_000_000)).collect::<Vec<_>>()]),
        InputKind::SortedArray => {
            // Strictly increasing with random gaps, so values are distinct.
            let mut v = 0u64;
            let nums: Vec<u64> = (0..n)
                .map(|_| {
                    v += 1 + rng.below(4);
                    v
                })
                .collect();
            let target = nums.get(rng.below(n as u64) as usize).copied().unwrap_or(0);
            json!([nums, target])
        }
        InputKind::String => {
            let s: String = (0..n).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
            json!([s])
        }
        InputKind::Graph => {
            let mut edges: Vec<[u64; 2]> = (1..n as u64).map(|v| [v - 1, v]).collect();
            while edges.len() < 2 * n && n > 1 {
                edges.push([rng.below(n as u64), rng.below(n as u64)]);
            }
            json!([n, edges])
        }
        InputKind::Number => json!([n]),
        InputKind::Seed => crate::ws::catalog::generate_test_data(algorithm, n),
    }
}

/// What one size's run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeRun {
    pub n: usize,
    /// CPU ms per call, one per repetition, with the empty call's cost taken off.
    pub call_ms: Vec<f64>,
    /// The empty call's CPU ms (already subtracted above).
    pub empty_ms: f64,
    /// Peak bytes of the call (Python), else None.
    pub call_peak_bytes: Option<u64>,
    /// Peak bytes of the whole run from the cgroup.
    pub run_peak_bytes: u64,
    pub run_cpu_ms: f64,
    pub passed: bool,
    pub error: Option<String>,
}

impl SizeRun {
    /// Whether the series ends after this size.
    pub fn stops_series(&self) -> bool {
        !self.passed || self.call_ms.iter().any(|&ms| ms + self.empty_ms > STOP_CALL_NS as f64 / 1e6)
    }

    pub fn median_ms(&self) -> f64 {
        median(&self.call_ms)
    }

    /// The seed's shape of a size's result, plus the repetitions and the memory measure.
    pub fn to_json(&self) -> Value {
        let mut sorted = self.call_ms.clone();
        sorted.sort_by(f64::total_cmp);
        json!({
            "inputSize": self.n,
            "executionTime": self.median_ms(),
            "memoryUsage": self.run_peak_bytes as f64 / (1024.0 * 1024.0),
            "success": self.passed,
            "runs": self.call_ms.len(),
            "cpuTimes": self.call_ms,
            "min": sorted.first().copied().unwrap_or(0.0),
            "max": sorted.last().copied().unwrap_or(0.0),
            "emptyCallTime": self.empty_ms,
            "callPeakBytes": self.call_peak_bytes,
            "runPeakBytes": self.run_peak_bytes,
            "runCpuTime": self.run_cpu_ms,
            "error": self.error,
        })
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        len if len % 2 == 1 => v[len / 2],
        len => (v[len / 2 - 1] + v[len / 2]) / 2.0,
    }
}

/// Every repetition of every passed size as a time sample (ms).
pub fn time_samples(runs: &[SizeRun]) -> Vec<Sample> {
    runs.iter()
        .filter(|r| r.passed)
        .flat_map(|r| r.call_ms.iter().map(move |&v| Sample { n: r.n as f64, value: v }))
        .collect()
}

/// One memory sample per passed size: the call's own peak where the harness measured it
/// (at least three sizes; the largest sizes may lack it, tracemalloc being skipped when
/// the budget is short), else the run's peak from the cgroup (which includes the
/// interpreter and the input, so it grows at least linearly whatever the algorithm does).
/// Returns the measure's name.
pub fn memory_samples(runs: &[SizeRun]) -> (Vec<Sample>, &'static str) {
    let passed: Vec<&SizeRun> = runs.iter().filter(|r| r.passed).collect();
    let own: Vec<Sample> =
        passed.iter().filter_map(|r| Some(Sample { n: r.n as f64, value: r.call_peak_bytes? as f64 })).collect();
    if own.len() >= 3 {
        (own, "callPeakBytes")
    } else {
        (passed.iter().map(|r| Sample { n: r.n as f64, value: r.run_peak_bytes as f64 }).collect(), "runPeakBytes")
    }
}

/// The seed's method on the same measurements, one sample per size (the median), as its
/// benchmark has: `{bestFit, confidence}` with its confidence, R² in per cent.
pub fn seed_method(runs: &[SizeRun]) -> Value {
    let samples: Vec<Sample> =
        runs.iter().filter(|r| r.passed).map(|r| Sample { n: r.n as f64, value: r.median_ms() }).collect();
    let (fit, r2) = complexity::seed_baseline(&samples);
    json!({ "bestFit": fit, "confidence": r2 * 100.0 })
}

/// Bytes of a memory measure that are noise, not growth (see
/// [`complexity::analyze_memory`]): what a function that allocates nothing depending on n
/// still shows across the sizes.
/// - C counts malloc'd bytes exactly; the allocator rounds to 16 bytes.
/// - Python's tracemalloc sees every object: loop counters above the small-int cache
///   (32 bytes each), a range or an iterator; in-place sorts of the corpus step up by
///   up to 190 bytes across their sizes. 512 leaves a margin of 2.7 over that.
/// - JavaScript's heap delta moves by up to ~6 KiB at one size now and then (V8's own
///   work around the call); real growth of a byte per element is 128 KiB at 2¹⁷.
/// - The run's cgroup peak counts pages of the interpreter and its allocator arenas.
pub fn memory_noise_bytes(language: &str, measure: &str) -> f64 {
    match (measure, language) {
        ("callPeakBytes", "c" | "cpp" | "cpp20") => 64.0,
        ("callPeakBytes", "python") => 512.0,
        ("callPeakBytes", _) => 8192.0,
        _ => f64::from(256u32 << 10),
    }
}

/// `complexityAnalysis` (time), `memoryAnalysis` and `seedMethod` of a finished benchmark
/// of a function in `language`.
pub fn analyses(runs: &[SizeRun], language: &str) -> (Value, Value, Value) {
    // Values under the empty call's cost are at the measurement's resolution.
    let empties: Vec<f64> = runs.iter().filter(|r| r.passed).map(|r| r.empty_ms).collect();
    let resolution = median(&empties);
    let mut time =
        complexity::to_json(complexity::analyze_with_resolution(&time_samples(runs), resolution).as_ref());
    if let Some(o) = time.as_object_mut() {
        o.insert("measure".into(), Value::from("callCpuTime"));
        o.insert("unit".into(), Value::from("ms"));
    }
    let (mem_samples, measure) = memory_samples(runs);
    let noise = memory_noise_bytes(language, measure);
    let mut memory = complexity::to_json(complexity::analyze_memory(&mem_samples, noise).as_ref());
    if let Some(o) = memory.as_object_mut() {
        o.insert("measure".into(), Value::from(measure));
        o.insert("unit".into(), Value::from("bytes"));
        o.insert("noiseBytes".into(), Value::from(noise));
    }
    (time, memory, seed_method(runs))
}

/// Two solutions on the same inputs: the speedup of `b` over `a` per size both passed
/// (median time of a / median time of b).
pub fn speedups(a: &[SizeRun], b: &[SizeRun]) -> Vec<Value> {
    a.iter()
        .filter(|x| x.passed)
        .filter_map(|x| {
            let y = b.iter().find(|y| y.n == x.n && y.passed)?;
            let (ma, mb) = (x.median_ms(), y.median_ms());
            Some(json!({
                "inputSize": x.n, "timeA": ma, "timeB": mb,
                "speedup": if mb > 0.0 { Value::from(ma / mb) } else { Value::Null },
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_are_geometric_over_two_orders_of_magnitude() {
        let s = sizes(FIRST_SIZE, InputKind::Array.max_size());
        assert_eq!(&s[..7], &[4, 6, 8, 11, 16, 23, 32]);
        assert!(*s.last().unwrap() as f64 / s[0] as f64 >= 100.0);
        for w in s.windows(2) {
            let r = w[1] as f64 / w[0] as f64;
            assert!(r > 1.2 && r < 1.6, "{w:?}");
        }
    }

    #[test]
    fn generators_are_deterministic_and_shaped() {
        for kind in [InputKind::Array, InputKind::SortedArray, InputKind::String, InputKind::Graph, InputKind::Number] {
            assert_eq!(generate(kind, "x", 100, 7), generate(kind, "x", 100, 7), "{kind:?}");
            assert_eq!(InputKind::parse(kind.name()), Some(kind));
        }
        assert_ne!(generate(InputKind::Array, "x", 100, 7), generate(InputKind::Array, "x", 100, 8));
        let a = generate(InputKind::Array, "x", 50, 1);
        assert_eq!(a[0].as_array().unwrap().len(), 50);
        let s = generate(InputKind::SortedArray, "x", 200, 1);
        let nums: Vec<u64> = s[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]));
        assert!(nums.contains(&s[1].as_u64().unwrap()));
        assert_eq!(generate(InputKind::String, "x", 30, 1)[0].as_str().unwrap().len(), 30);
        let g = generate(InputKind::Graph, "x", 40, 1);
        assert_eq!(g[0], 40);
        assert_eq!(g[1].as_array().unwrap().len(), 80);
        assert!(g[1].as_array().unwrap().iter().all(|e| e[0].as_u64().unwrap() < 40 && e[1].as_u64().unwrap() < 40));
        assert_eq!(generate(InputKind::Number, "x", 12, 1), json!([12]));
        assert_eq!(InputKind::for_category("SEARCHING"), InputKind::SortedArray);
        assert_eq!(InputKind::for_category("anything"), InputKind::Array);
    }

    #[test]
    fn a_generator_gets_n_m_and_the_seed_and_is_named_by_its_program() {
        assert_eq!(GeneratorSource::stdin(100, 7), "100 200 7\n");
        let g = GeneratorSource { language: "python".into(), source: "print([1])".into() };
        let name = g.kind_name();
        assert!(name.starts_with("generator:") && name.len() == "generator:".len() + 12, "{name}");
        assert_eq!(name, g.clone().kind_name());
        assert_ne!(name, GeneratorSource { source: "print([2])".into(), ..g.clone() }.kind_name());
        assert_ne!(name, GeneratorSource { language: "c".into(), ..g }.kind_name());
    }

    fn run(n: usize, ms: &[f64], peak: Option<u64>) -> SizeRun {
        SizeRun {
            n,
            call_ms: ms.to_vec(),
            empty_ms: 0.001,
            call_peak_bytes: peak,
            run_peak_bytes: 10_000_000 + 8 * n as u64,
            run_cpu_ms: 30.0,
            passed: true,
            error: None,
        }
    }

    #[test]
    fn a_long_call_or_a_failure_stops_the_series() {
        assert!(!run(100, &[1.0, 2.0], None).stops_series());
        assert!(run(100, &[1.0, 200.0], None).stops_series());
        assert!(SizeRun { passed: false, ..run(100, &[1.0], None) }.stops_series());
    }

    #[test]
    fn analyses_fit_time_and_memory_and_run_the_seed_method() {
        // Quadratic time, linear call memory.
        let runs: Vec<SizeRun> = sizes(8, 1024)
            .into_iter()
            .map(|n| {
                let t = 1e-5 * (n * n) as f64;
                run(n, &[t * 0.98, t, t * 1.03], Some(16 * n as u64 + 100))
            })
            .collect();
        let (time, memory, seed) = analyses(&runs, "python");
        assert_eq!(time["bestFit"], "O(n²)", "{time}");
        assert_eq!(time["samples"], 3 * runs.len());
        assert_eq!(memory["bestFit"], "O(n)", "{memory}");
        assert_eq!(memory["measure"], "callPeakBytes");
        assert!(seed["bestFit"].is_string());
        // Without the call's own peak, the run's (interpreter + input) is fitted instead.
        let js: Vec<SizeRun> = runs.iter().map(|r| SizeRun { call_peak_bytes: None, ..r.clone() }).collect();
        assert_eq!(analyses(&js, "javascript").1["measure"], "runPeakBytes");
    }

    #[test]
    fn memory_that_grows_within_the_noise_is_constant() {
        // An in-place sort in Python: nothing, then one counter above the small-int cache
        // from n = 256 on, the quadratic time stopping the series near 1500.
        let inplace: Vec<SizeRun> = sizes(4, 1448)
            .into_iter()
            .map(|n| run(n, &[1e-4 * (n * n) as f64], Some(if n >= 256 { 32 } else { 0 } + (n % 3) as u64 * 8)))
            .collect();
        let (_, memory, _) = analyses(&inplace, "python");
        assert_eq!(memory["bestFit"], "O(1)", "{memory}");
        assert!(memory["confidence"].as_f64().unwrap() > 0.5, "{memory}");
        // The same step in bytes is growth in C, where the counter is exact and the noise
        // floor lower: 32 bytes at 256 must not be, but 8 bytes per element must be.
        let linear: Vec<SizeRun> =
            sizes(4, 1448).into_iter().map(|n| run(n, &[1e-4 * n as f64], Some(8 * n as u64 + 16))).collect();
        assert_eq!(analyses(&linear, "c").1["bestFit"], "O(n)");
        // A copy of the input's size is O(n) whatever the language's noise.
        assert_eq!(analyses(&linear, "javascript").1["bestFit"], "O(n)");
    }

    #[test]
    fn speedups_pair_sizes_both_passed() {
        let a = vec![run(10, &[4.0], None), run(20, &[8.0], None), run(40, &[16.0], None)];
        let b = vec![run(10, &[1.0], None), SizeRun { passed: false, ..run(20, &[1.0], None) }];
        let s = speedups(&a, &b);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["speedup"], 4.0);
    }
}
