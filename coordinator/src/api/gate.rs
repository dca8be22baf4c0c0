//! The hoop every API request passes first: CORS, who is calling, and the rate limit.
//! What it learns goes into the depot as an `Identity` for the handlers.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use salvo::http::header::{self, HeaderValue};
use salvo::http::{Method, StatusCode};
use salvo::{Depot, FlowCtrl, Handler, Request, Response, async_trait};

use super::auth::{Authn, Caller};
use super::error::ApiError;
use super::limits::{Cors, Key, RateLimiter};
use super::Identity;
use crate::metrics::Metrics;

/// The access hoop in front of every route of the table.
pub(crate) struct Gate {
    pub(super) authn: Authn,
    pub(super) limiter: Option<Arc<RateLimiter>>,
    pub(super) cors: Cors,
    pub(super) metrics: Metrics,
}

/// Paths a monitoring system polls: never rate limited, no credential needed.
fn exempt(path: &str) -> bool {
    // Peers poll /api/cluster/self to build /api/cluster.
    matches!(path, "/metrics" | "/health" | "/api/cluster/self")
}

/// The caller's address, as per-IP limits see it.
pub(crate) fn client_ip(req: &Request) -> IpAddr {
    // Unix sockets and the like have no IP: they share one key.
    req.remote_addr().clone().into_std().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical())
}

#[async_trait]
impl Handler for Gate {
    async fn handle(&self, req: &mut Request, depot: &mut Depot, res: &mut Response, ctrl: &mut FlowCtrl) {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let allowed = origin.as_deref().and_then(|o| self.cors.allow(o));
        if let Some(allow) = &allowed
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
        }
        // A preflight is answered here, whatever the route: 204, with the grants only
        // for an allowed origin (the browser then refuses the real request itself).
        if req.method() == Method::OPTIONS && origin.is_some() && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            if allowed.is_some() {
                let h = res.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("authorization, content-type, x-auth-token"),
                );
                h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            }
            res.status_code(StatusCode::NO_CONTENT);
            ctrl.skip_rest();
            return;
        }
        let path = req.uri().path();
        if exempt(path) {
            ctrl.call_next(req, depot, res).await;
            return;
        }
        let judge0 = !path.starts_with("/api/");
        let ip = client_ip(req);
        let refuse = |err: ApiError, res: &mut Response, ctrl: &mut FlowCtrl| {
            if judge0 { err.write_judge0(res) } else { err.write(res) }
            ctrl.skip_rest();
        };
        let caller = match self.authn.caller(req).await {
            Ok(c) => c,
            // Judge0 with authentication off ignores X-Auth-Token, and its clients send
            // whatever they were configured with: so do we, where anonymous runs are allowed.
            Err(_) if judge0 && self.authn.config.allow_anonymous && !req.headers().contains_key(header::AUTHORIZATION) => {
                Caller::Anonymous
            }
            Err(err) => {
                // Guessing credentials costs the guesser's address its budget.
                if let Some(limiter) = &self.limiter {
                    let _ = limiter.check(&Key::Ip(ip), Instant::now());
                }
                return refuse(err, res, ctrl);
            }
        };
        let key = match &caller {
            Caller::User(p) => Key::User(p.user_id),
            Caller::Anonymous => Key::Ip(ip),
        };
        if let Some(limiter) = &self.limiter
            && let Err(err) = limiter.admit(&key)
        {
            self.metrics.rate_limited(key.scope());
            return refuse(err, res, ctrl);
        }
        depot.insert_typed(Identity { caller, key });
        ctrl.call_next(req, depot, res).await;
    }
}
