//! `/api/analytics/benchmarks…` and `/api/analytics/compare`: stored benchmark runs
//! (written by the WebSocket's PERFORMANCE_BENCHMARK), their plot, and the comparison of
//! two runs on the same inputs. Reading needs no token, as the catalog's reads.

use salvo::Request;
use salvo::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::analytics::benchmark::{SizeRun, speedups};
use crate::analytics::complexity::Class;
use crate::store::Store;

const MAX_PER_PAGE: i64 = 100;

/// The routes; their paths and access rules are in `api::routes`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BenchRoute {
    List,
    Get,
    /// Answered by `plot` (SVG, not JSON).
    Plot,
    Compare,
}

/// Answers the JSON routes.
pub(super) async fn handle(store: &Store, route: BenchRoute, req: &Request) -> Result<(StatusCode, Value), ApiError> {
    match route {
        BenchRoute::List => list(store, req).await,
        BenchRoute::Get => get(store, req).await.map(|v| (StatusCode::OK, v)),
        BenchRoute::Compare => compare(store, req).await,
        BenchRoute::Plot => plot(store, req).await.map(|svg| (StatusCode::OK, Value::String(svg))),
    }
}

fn db(e: crate::store::StoreError) -> ApiError {
    ApiError::DatabaseUnavailable(e.to_string())
}

fn query_i64(req: &Request, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    match req.query::<String>(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| ApiError::InvalidField(format!("{name} must be an integer in {min}..={max}, not {raw:?}"))),
    }
}

async fn list(store: &Store, req: &Request) -> Result<(StatusCode, Value), ApiError> {
    let page = query_i64(req, "page", 1, 1, 1_000_000)?;
    let per_page = query_i64(req, "perPage", 20, 1, MAX_PER_PAGE)?;
    let algorithm = req.query::<String>("algorithm").filter(|a| !a.is_empty());
    // PostgreSQL refuses text with NUL characters.
    if algorithm.as_ref().is_some_and(|a| a.len() > 100 || a.contains('\0')) {
        return Err(ApiError::InvalidField("algorithm: at most 100 bytes, no NUL characters".into()));
    }
    let (runs, total) =
        store.list_benchmarks(algorithm.as_deref(), (page - 1) * per_page, per_page).await.map_err(db)?;
    Ok((StatusCode::OK, json!({ "benchmarks": runs, "total": total, "page": page, "perPage": per_page })))
}

fn run_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| ApiError::InvalidId(raw.to_string()))
}

async fn load(store: &Store, raw: &str) -> Result<Value, ApiError> {
    let id = run_id(raw)?;
    store.get_benchmark(id).await.map_err(db)?.ok_or(ApiError::BenchmarkNotFound(id))
}

async fn get(store: &Store, req: &Request) -> Result<Value, ApiError> {
    load(store, &req.param::<String>("id").unwrap_or_default()).await
}

/// The stored results back as size runs (passed sizes only).
fn size_runs(run: &Value) -> Vec<SizeRun> {
    run["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|r| r["success"] == Value::Bool(true))
        .filter_map(|r| {
            Some(SizeRun {
                n: r["inputSize"].as_u64()? as usize,
                call_ms: r["cpuTimes"].as_array()?.iter().filter_map(Value::as_f64).collect(),
                empty_ms: r["emptyCallTime"].as_f64().unwrap_or(0.0),
                call_peak_bytes: r["callPeakBytes"].as_u64(),
                run_peak_bytes: r["runPeakBytes"].as_u64().unwrap_or(0),
                run_cpu_ms: r["runCpuTime"].as_f64().unwrap_or(0.0),
                passed: true,
                error: None,
            })
        })
        .collect()
}

/// `?a=ID&b=ID`: two runs on the same inputs (same input kind and seed): both fits and
/// the speedup of b over a per size both passed.
async fn compare(store: &Store, req: &Request) -> Result<(StatusCode, Value), ApiError> {
    let param = |name: &str| {
        req.query::<String>(name).ok_or_else(|| ApiError::MissingField(format!("query parameter {name} (a benchmark id)")))
    };
    let a = load(store, &param("a")?).await?;
    let b = load(store, &param("b")?).await?;
    if a["inputKind"] != b["inputKind"] || a["seed"] != b["seed"] {
        return Err(ApiError::InvalidField(format!(
            "benchmarks {} and {} ran on different inputs ({} seed {} vs {} seed {}): compare runs of the same input kind and seed",
            a["id"], b["id"], a["inputKind"], a["seed"], b["inputKind"], b["seed"]
        )));
    }
    let per_size = speedups(&size_runs(&a), &size_runs(&b));
    let summary = |v: &Value| {
        json!({
            "id": v["id"], "algorithmName": v["algorithmName"], "language": v["language"],
            "complexityAnalysis": v["complexityAnalysis"], "memoryAnalysis": v["memoryAnalysis"],
        })
    };
    Ok((StatusCode::OK, json!({ "a": summary(&a), "b": summary(&b), "speedups": per_size })))
}

pub(super) async fn plot(store: &Store, req: &Request) -> Result<String, ApiError> {
    let run = load(store, &req.param::<String>("id").unwrap_or_default()).await?;
    Ok(svg(&run))
}

/// Two panels, log-log and linear: per size the median with a bar from the fastest to the
/// slowest repetition, and the fitted curve a·f(n)+b.
pub fn svg(run: &Value) -> String {
    let runs = size_runs(run);
    let analysis = &run["complexityAnalysis"];
    let class = analysis["bestFit"].as_str().and_then(Class::from_name);
    let (a, b) = (analysis["coefficients"]["a"].as_f64().unwrap_or(0.0), analysis["coefficients"]["b"].as_f64().unwrap_or(0.0));
    let title = format!(
        "{} ({}): {} , confidence {:.2}",
        run["algorithmName"].as_str().unwrap_or("?"),
        run["language"].as_str().unwrap_or("?"),
        analysis["bestFit"].as_str().unwrap_or("Unknown"),
        analysis["confidence"].as_f64().unwrap_or(0.0)
    );
    let mut out = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1000\" height=\"420\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"1000\" height=\"420\" fill=\"white\"/>\n",
    );
    out.push_str(&format!("<text x=\"500\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n", escape(&title)));
    for (panel, log) in [(0.0, true), (500.0, false)] {
        out.push_str(&panel_svg(&runs, class.map(|c| (c, a, b)), panel, log));
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn panel_svg(runs: &[SizeRun], fit: Option<(Class, f64, f64)>, left: f64, log: bool) -> String {
    let (x0, y0, w, h) = (left + 70.0, 40.0, 400.0, 320.0);
    let mut s = format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<rect x=\"{x0}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#888\"/>\n",
        x0 + w / 2.0,
        y0 - 6.0,
        if log { "log-log" } else { "linear" }
    );
    if runs.is_empty() {
        return s + &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no measurements</text>\n", x0 + w / 2.0, y0 + h / 2.0);
    }
    let positive_min = runs.iter().flat_map(|r| r.call_ms.iter().copied()).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let floor = if positive_min.is_finite() { positive_min / 2.0 } else { 1e-6 };
    let ty = |v: f64| if log { v.max(floor).log10() } else { v };
    let tx = |n: f64| if log { n.max(1.0).log10() } else { n };
    let xs: Vec<f64> = runs.iter().map(|r| tx(r.n as f64)).collect();
    let lows: Vec<f64> = runs.iter().map(|r| ty(r.call_ms.iter().copied().fold(f64::INFINITY, f64::min))).collect();
    let highs: Vec<f64> = runs.iter().map(|r| ty(r.call_ms.iter().copied().fold(0.0, f64::max))).collect();
    let (xmin, xmax) = (xs.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let ymin = if log { lows.iter().copied().fold(f64::INFINITY, f64::min) } else { 0.0 };
    let ymax = highs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = |lo: f64, hi: f64| if hi > lo { hi - lo } else { 1.0 };
    let px = |x: f64| x0 + (x - xmin) / span(xmin, xmax) * w;
    let py = |y: f64| y0 + h - (y - ymin) / span(ymin, ymax) * h;
    // Axis labels: the ends of each range, in the data's units.
    let label = |v: f64| if log { format!("{:.3e}", 10f64.powf(v)) } else { format!("{v:.3e}") };
    s += &format!(
        "<text x=\"{x0}\" y=\"{}\" >{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} (n)</text>\n",
        y0 + h + 16.0,
        label(xmin),
        x0 + w,
        y0 + h + 16.0,
        label(xmax)
    );
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} ms</text>\n",
        x0 - 4.0,
        y0 + h,
        label(ymin),
        x0 - 4.0,
        y0 + 10.0,
        label(ymax)
    );
    for (i, r) in runs.iter().enumerate() {
        let (x, m) = (px(xs[i]), py(ty(r.median_ms())));
        s += &format!(
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#36c\"/><circle cx=\"{x:.1}\" cy=\"{m:.1}\" r=\"3\" fill=\"#36c\"/>\n",
            py(lows[i]),
            py(highs[i])
        );
    }
    if let Some((class, a, b)) = fit {
        let steps = 100;
        let mut path = String::new();
        for k in 0..=steps {
            let x = xmin + span(xmin, xmax) * f64::from(k) / f64::from(steps);
            let n = if log { 10f64.powf(x) } else { x };
            let y = ty(a * class.f(n) + b);
            if !y.is_finite() {
                continue;
            }
            let y = y.clamp(ymin - span(ymin, ymax), ymax + span(ymin, ymax));
            path += &format!("{}{:.1},{:.1} ", if path.is_empty() { "M" } else { "L" }, px(x), py(y));
        }
        s += &format!(
            "<clipPath id=\"c{left}\"><rect x=\"{x0}\" y=\"{y0}\" width=\"{w}\" height=\"{h}\"/></clipPath>\n\
             <path d=\"{path}\" fill=\"none\" stroke=\"#c33\" stroke-width=\"1.5\" clip-path=\"url(#c{left})\"/>\n"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_plot_has_a_point_and_a_bar_per_size_and_the_fitted_curve_in_both_panels() {
        let run = json!({
            "algorithmName": "a<b", "language": "python",
            "results": [
                { "inputSize": 10, "success": true, "cpuTimes": [1.0, 1.2, 0.9] },
                { "inputSize": 100, "success": true, "cpuTimes": [10.0, 11.0] },
                { "inputSize": 1000, "success": true, "cpuTimes": [100.0] },
                { "inputSize": 2000, "success": false, "cpuTimes": [] },
            ],
            "complexityAnalysis": { "bestFit": "O(n)", "confidence": 0.9, "coefficients": { "a": 0.1, "b": 0.0 } },
        });
        let svg = svg(&run);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 6, "3 passed sizes in 2 panels");
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("a&lt;b") && svg.contains("log-log") && svg.contains("linear"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = super::svg(&json!({ "results": [], "complexityAnalysis": {} }));
        assert_eq!(empty.matches("no measurements").count(), 2);
    }

    #[test]
    fn stored_results_become_size_runs() {
        let run = json!({ "results": [
            { "inputSize": 8, "success": true, "cpuTimes": [2.0, 4.0, 3.0], "callPeakBytes": 64, "runPeakBytes": 1000 },
            { "inputSize": 16, "success": false },
        ]});
        let r = size_runs(&run);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].n, r[0].median_ms(), r[0].call_peak_bytes), (8, 3.0, Some(64)));
    }
}
