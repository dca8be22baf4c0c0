//! `/api/analytics` (statistics, leaderboards, progress, achievements; the benchmark
//! routes under `/api/analytics` live elsewhere). Statistics and leaderboards are public;
//! progress and achievements are the caller's own (an admin may ask for any user's with
//! `?userId=`). The rules are documented in docs/analytics.md.

use salvo::Request;
use salvo::http::StatusCode;
use serde_json::{Value, json};

use super::auth::Caller;
use super::catalog::store_error;
use super::dashboard::{self, Dashboard};
use super::error::ApiError;
use crate::store::auth::Role;
use crate::store::dashboard::{ACHIEVEMENTS, Aggregate, OPTIMIZATION_FACTOR};

fn aggregate(a: &Aggregate, scale: f64) -> Value {
    json!({
        "avg": a.avg.map(|v| v / scale),
        "min": a.min.map(|v| v as f64 / scale),
        "max": a.max.map(|v| v as f64 / scale),
    })
}

pub(super) async fn stats(d: &Dashboard, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let algorithm = match dashboard::text_param(req, "algorithm", 64)? {
        Some(slug) => Some(dashboard::algorithm(&d.store, &slug).await?.id),
        None => None,
    };
    let language = dashboard::text_param(req, "language", 32)?;
    if let Some(l) = &language {
        dashboard::function_language(&d.spec, l)?;
    }
    let rows = d.store.run_stats(algorithm, language.as_deref()).await.map_err(store_error)?;
    let stats: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "algorithm": s.algorithm,
                "name": s.name,
                "language": s.language,
                "count": s.runs,
                "finished": s.finished,
                "succeeded": s.succeeded,
                // Of the finished runs; null before any finished.
                "successRate": (s.finished > 0).then(|| s.succeeded as f64 / s.finished as f64),
                "cpuTimeMs": aggregate(&s.cpu_us, 1000.0),
                "memoryMb": aggregate(&s.peak_bytes, 1024.0 * 1024.0),
            })
        })
        .collect();
    Ok((StatusCode::OK, json!({ "stats": stats })))
}

pub(super) async fn leaderboard(d: &Dashboard, req: &mut Request) -> Result<(StatusCode, Value), ApiError> {
    let slug = req.param::<String>("slug").unwrap_or_default();
    let algorithm = dashboard::algorithm(&d.store, &slug).await?;
    let language = dashboard::text_param(req, "language", 32)?;
    if let Some(l) = &language {
        dashboard::function_language(&d.spec, l)?;
    }
    let limit = dashboard::int_param(req, "limit", 10, 1, 100)?;
    let rows = d.store.leaderboard(algorithm.id, language.as_deref(), limit).await.map_err(store_error)?;
    let entries: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "rank": i + 1,
                "userId": r.user_id,
                "user": r.user,
                "language": r.language,
                "cpuTime": r.cpu_us as f64 / 1000.0,
                "memoryUsage": r.peak_bytes as f64 / (1024.0 * 1024.0),
                "executionId": r.run_id,
                "achievedAt": r.achieved_at,
            })
        })
        .collect();
    Ok((StatusCode::OK, json!({ "algorithm": algorithm.slug, "language": language, "entries": entries })))
}

/// Whose data: the caller, or `?userId=` for an admin (or the caller's own id).
async fn subject(d: &Dashboard, req: &Request, caller: &Caller) -> Result<i64, ApiError> {
    let who = dashboard::user(caller)?;
    let asked = dashboard::int_param(req, "userId", who.user_id, 1, i64::MAX)?;
    if asked != who.user_id {
        if who.role < Role::Admin {
            return Err(ApiError::Forbidden("only admins may see other users' progress and achievements".into()));
        }
        if !d.store.user_exists(asked).await.map_err(store_error)? {
            return Err(ApiError::InvalidField(format!("userId: user {asked} does not exist")));
        }
    }
    Ok(asked)
}

pub(super) async fn progress(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let user = subject(d, req, caller).await?;
    let rows = d.store.progress(user).await.map_err(store_error)?;
    let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "algorithm": r.algorithm,
                "name": r.name,
                "difficulty": r.difficulty,
                "category": r.category,
                "status": r.status,
                "attempts": r.attempts,
                "bestTime": r.best_cpu_us.map(|us| us as f64 / 1000.0),
                "bestMemory": r.best_peak_bytes.map(|b| b as f64 / (1024.0 * 1024.0)),
                "completedAt": r.completed_at,
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "userId": user,
            "summary": {
                "NOT_STARTED": count("NOT_STARTED"),
                "IN_PROGRESS": count("IN_PROGRESS"),
                "COMPLETED": count("COMPLETED"),
                "MASTERED": count("MASTERED"),
            },
            "progress": list,
        }),
    ))
}

pub(super) async fn achievements(d: &Dashboard, req: &mut Request, caller: &Caller) -> Result<(StatusCode, Value), ApiError> {
    let user = subject(d, req, caller).await?;
    let unlocked = d.store.achievements(user).await.map_err(store_error)?;
    let points: i64 = unlocked.iter().map(|a| i64::from(a.points)).sum();
    let available: Vec<Value> = ACHIEVEMENTS
        .iter()
        .map(|(kind, title, description, points)| {
            let got = unlocked.iter().find(|a| a.kind == *kind);
            json!({
                "type": kind,
                "title": title,
                "description": description,
                "points": points,
                "unlocked": got.is_some(),
                "unlockedAt": got.map(|a| a.unlocked_at.clone()),
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "userId": user,
            "points": points,
            "unlocked": unlocked.iter().map(|a| json!({
                "type": a.kind,
                "title": a.title,
                "description": a.description,
                "points": a.points,
                "unlockedAt": a.unlocked_at,
            })).collect::<Vec<_>>(),
            "achievements": available,
            "optimizationFactor": OPTIMIZATION_FACTOR,
        }),
    ))
}
