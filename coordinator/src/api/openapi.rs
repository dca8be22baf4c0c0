//! `/api/openapi.json`: the OpenAPI 3.0 document, generated from the route table
//! (`api::routes`) that also builds the router, so every served route is documented with
//! the access rule the handler enforces. Schemas are written here beside the routes;
//! CI runs schemathesis against the served document (`tests/tests/openapi.rs`), which
//! fails when an answer does not match its schema.

use serde_json::{Map, Value, json};

use super::{Access, Op};

/// One operation's documentation, built with the chained methods below.
#[derive(Debug, Clone)]
pub struct Doc {
    tag: &'static str,
    summary: &'static str,
    params: Vec<(&'static str, Value)>,
    query: Vec<(&'static str, Value)>,
    body: Option<Value>,
    ok: Option<(u16, Value)>,
    text: bool,
    /// Answers an SVG image (200).
    svg: bool,
    /// Answers a zip (200) / takes a zip body.
    zip: bool,
    zip_body: bool,
    /// Judge0's error shapes instead of ours.
    judge0: bool,
    /// Needs the database (503 without it).
    db: bool,
}

impl Doc {
    pub fn new(tag: &'static str, summary: &'static str) -> Doc {
        Doc { tag, summary, params: vec![], query: vec![], body: None, ok: None, text: false, svg: false, zip: false, zip_body: false, judge0: false, db: false }
    }

    /// A route of the Judge0-compatible API.
    pub fn judge0(summary: &'static str) -> Doc {
        Doc { judge0: true, ..Doc::new("judge0", summary) }
    }

    /// A path parameter (`{name}` in the path).
    pub fn param(mut self, name: &'static str, schema: Value) -> Doc {
        self.params.push((name, schema));
        self
    }

    /// Optional query parameters.
    pub fn query(mut self, params: &[(&'static str, Value)]) -> Doc {
        self.query.extend(params.iter().cloned());
        self
    }

    /// A JSON request body.
    pub fn body(mut self, schema: Value) -> Doc {
        self.body = Some(schema);
        self
    }

    /// The success status and its JSON body.
    pub fn ok(mut self, status: u16, schema: Value) -> Doc {
        self.ok = Some((status, schema));
        self
    }

    /// Answers plain text (200).
    pub fn text(mut self) -> Doc {
        self.text = true;
        self
    }

    /// Answers an SVG image (200).
    pub fn svg(mut self) -> Doc {
        self.svg = true;
        self
    }

    /// Answers a zip archive (200).
    pub fn zip(mut self) -> Doc {
        self.zip = true;
        self
    }

    /// Takes a zip archive as the body.
    pub fn zip_body(mut self) -> Doc {
        self.zip_body = true;
        self
    }

    pub fn db(mut self) -> Doc {
        self.db = true;
        self
    }
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.trim_matches(|c| c == '{' || c == '}');
        let seg = if path.contains(&format!("{{{seg}}}")) { format!("By_{seg}") } else { seg.to_string() };
        id.push('_');
        id.push_str(&seg.replace(['.', '-'], "_"));
    }
    id
}

/// The whole document. `allow_anonymous` says whether runs need a credential here.
pub(crate) fn document(ops: &[Op], allow_anonymous: bool) -> Value {
    let mut paths = Map::new();
    for op in ops {
        let doc = &op.doc;
        let mut params: Vec<Value> = doc
            .params
            .iter()
            .map(|(name, schema)| json!({ "name": name, "in": "path", "required": true, "schema": schema }))
            .collect();
        params.extend(doc.query.iter().map(|(name, schema)| json!({ "name": name, "in": "query", "schema": schema })));
        let error = if doc.judge0 { schema::judge0_error() } else { schema::error() };
        let mut responses = Map::new();
        if doc.text {
            responses.insert("200".into(), json!({ "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } }));
        }
        if doc.svg {
            responses.insert("200".into(), json!({ "description": "OK", "content": { "image/svg+xml": { "schema": { "type": "string" } } } }));
        }
        if doc.zip {
            responses.insert("200".into(), json!({ "description": "OK", "content": { "application/zip": { "schema": { "type": "string", "format": "binary" } } } }));
        }
        if let Some((status, body)) = &doc.ok {
            responses.insert(status.to_string(), json!({ "description": "OK", "content": { "application/json": { "schema": body } } }));
        }
        responses.insert(
            "4XX".into(),
            json!({
                "description": "Bad request (a field named in the message), 401 without a valid credential, 403 for a role too low, 404, 413, 429 rate limited (with Retry-After)",
                "content": { "application/json": { "schema": error } },
            }),
        );
        if doc.db || matches!(op.access, Access::Run) {
            responses.insert(
                "503".into(),
                json!({ "description": "No database, or the queue is full", "content": { "application/json": { "schema": error } } }),
            );
        } else if doc.tag == "cluster" {
            responses.insert(
                "503".into(),
                json!({ "description": "Not the leader, or not committed in time (with Retry-After)", "content": { "application/json": { "schema": error } } }),
            );
        }
        let method = op.method.as_str().to_lowercase();
        let mut operation = json!({
            "operationId": operation_id(&method, op.path),
            "summary": doc.summary,
            "tags": [doc.tag],
            "parameters": params,
            "responses": responses,
        });
        let security = match op.access {
            Access::Public => None,
            Access::Run if allow_anonymous => Some(json!([{}, { "bearer": [] }, { "authToken": [] }])),
            Access::Run | Access::AtLeast(_) => Some(json!([{ "bearer": [] }, { "authToken": [] }])),
        };
        if let Some(security) = security {
            operation["security"] = security;
        }
        if let Access::AtLeast(role) = op.access {
            operation["description"] = json!(format!("Needs role {role} or above."));
        }
        if doc.zip_body {
            operation["requestBody"] = json!({ "required": true, "content": { "application/zip": { "schema": { "type": "string", "format": "binary" } } } });
        }
        if let Some(body) = &doc.body {
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": body } } });
        }
        let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "judge-cluster coordinator",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The judge's HTTP API, the dashboard's catalog, and a Judge0 CE compatible API at the root. WebSocket /ws: see docs/websocket.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API token (jc_...) or a session (JWT) from /api/auth/login" },
                "authToken": { "type": "apiKey", "in": "header", "name": "X-Auth-Token", "description": "The same credential, as Judge0 clients send it" },
            },
        },
    })
}

/// JSON schemas of bodies, as written by the handlers.
pub mod schema {
    use serde_json::{Value, json};

    pub fn object() -> Value {
        json!({ "type": "object" })
    }

    pub fn array() -> Value {
        json!({ "type": "array" })
    }

    pub fn string() -> Value {
        json!({ "type": "string" })
    }

    pub fn boolean() -> Value {
        json!({ "type": "boolean" })
    }

    pub fn new_cluster_node() -> Value {
        json!({
            "type": "object",
            "required": ["id", "raft", "api"],
            "additionalProperties": false,
            "properties": {
                "id": { "type": "integer", "format": "int64", "minimum": 1 },
                "raft": { "type": "string", "description": "ip:port of its raft peer link" },
                "api": { "type": "string", "description": "ip:port of its HTTP API" },
            },
        })
    }

    pub fn voters() -> Value {
        json!({
            "type": "object",
            "required": ["voters"],
            "properties": { "voters": { "type": "array", "items": { "type": "integer", "format": "int64" } } },
        })
    }

    pub fn id() -> Value {
        json!({ "type": "integer", "format": "int64", "minimum": 0 })
    }

    pub fn positive() -> Value {
        json!({ "type": "integer", "minimum": 1 })
    }

    /// `schema` with an example, which schemathesis sends first: ids and slugs that the
    /// CI run creates before it starts, so the routes behind them answer with data.
    pub fn example(mut schema: Value, example: Value) -> Value {
        schema["example"] = example;
        schema
    }

    pub fn count() -> Value {
        json!({ "type": "integer", "minimum": 0 })
    }

    fn nullable_string() -> Value {
        json!({ "type": "string", "nullable": true })
    }

    pub fn error() -> Value {
        json!({
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" } },
            } },
        })
    }

    /// `{"error": "..."}`, or 422's `{"attribute": ["reason"]}`.
    pub fn judge0_error() -> Value {
        json!({
            "oneOf": [
                { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                { "type": "object", "not": { "required": ["error"] }, "additionalProperties": { "type": "array", "items": { "type": "string" } } },
            ],
        })
    }

    pub fn health() -> Value {
        json!({
            "type": "object",
            "required": ["status", "agents", "queue", "database"],
            "properties": {
                "status": { "type": "string", "enum": ["ok", "degraded"] },
                "agents": { "type": "object", "required": ["connected", "slots", "freeSlots"], "properties": {
                    "connected": count(), "slots": count(), "freeSlots": count() } },
                "queue": { "type": "object", "required": ["queued", "running"], "properties": { "queued": count(), "running": count() } },
                "database": { "type": "object", "required": ["status"], "properties": {
                    "status": { "type": "string", "enum": ["ok", "unavailable", "disabled"] } } },
            },
        })
    }

    pub fn languages() -> Value {
        json!({ "type": "array", "items": { "type": "object", "required": ["id", "name"], "properties": {
            "id": string(), "name": string() } } })
    }

    pub fn new_submission() -> Value {
        json!({
            "type": "object",
            "required": ["language", "source", "tests"],
            "properties": {
                "language": string(),
                "source": string(),
                "tests": { "type": "array", "items": { "type": "object", "required": ["input"], "properties": {
                    "input": string(), "expectedOutput": nullable_string() } } },
                "limits": { "type": "object", "properties": { "cpuMs": positive(), "wallMs": positive(), "memoryMb": positive() } },
            },
        })
    }

    pub fn created_id() -> Value {
        json!({ "type": "object", "required": ["id"], "properties": { "id": id() } })
    }

    pub fn submission() -> Value {
        let verdict = json!({ "type": "string", "nullable": true, "enum": ["AC", "WA", "TLE", "MLE", "RE", "OLE", "CE", "IE", null] });
        json!({
            "type": "object",
            "required": ["id", "status", "verdict", "tests"],
            "properties": {
                "id": id(),
                "status": { "type": "string", "enum": ["queued", "running", "done"] },
                "verdict": verdict.clone(),
                "message": string(),
                "compileOutput": string(),
                "tests": { "type": "array", "items": { "type": "object", "required": ["verdict"], "properties": { "verdict": verdict } } },
                "attempts": count(),
            },
        })
    }

    fn algorithm_summary_properties() -> Value {
        json!({
            "id": id(), "slug": string(), "name": string(), "description": string(),
            "difficulty": { "type": "string", "enum": ["EASY", "MEDIUM", "HARD", "EXPERT"] },
            "category": string(), "timeComplexity": string(), "spaceComplexity": string(),
            "tags": { "type": "array", "items": string() },
            "hintCount": count(), "createdAt": string(), "updatedAt": string(),
        })
    }

    pub fn algorithm_page() -> Value {
        json!({
            "type": "object",
            "required": ["algorithms", "total", "page", "perPage"],
            "properties": {
                "algorithms": { "type": "array", "items": { "type": "object", "required": ["slug", "name", "difficulty", "category"], "properties": algorithm_summary_properties() } },
                "total": count(), "page": positive(), "perPage": positive(),
            },
        })
    }

    pub fn algorithm() -> Value {
        json!({ "type": "object", "required": ["slug", "name", "difficulty", "category"], "properties": algorithm_summary_properties() })
    }

    pub fn algorithm_input() -> Value {
        json!({
            "type": "object",
            "required": ["slug", "name", "description", "difficulty", "category", "timeComplexity", "spaceComplexity", "entryPoint", "testCases"],
            "properties": {
                "slug": string(), "name": string(), "description": string(),
                "difficulty": { "type": "string", "enum": ["EASY", "MEDIUM", "HARD", "EXPERT"] },
                "category": string(), "timeComplexity": string(), "spaceComplexity": string(),
                "tags": { "type": "array", "items": string() },
                "hints": { "type": "array", "items": string() },
                "solution": string(), "tutorial": string(), "entryPoint": string(),
                "testCases": { "type": "array", "items": { "type": "object", "required": ["input", "expected"], "properties": {
                    "input": array(), "expected": {}, "sample": boolean() } } },
                "referenceSolutions": { "type": "object", "additionalProperties": string() },
                "generator": { "type": "object", "required": ["language", "source"], "additionalProperties": false,
                    "properties": { "language": string(), "source": string() } },
            },
        })
    }

    pub fn deleted() -> Value {
        json!({ "type": "object", "required": ["deleted"], "properties": { "deleted": string() } })
    }

    pub fn new_user() -> Value {
        json!({ "type": "object", "required": ["name", "role"], "properties": {
            "name": string(), "email": string(), "role": { "type": "string", "enum": ["admin", "setter", "user"] },
            "password": string() } })
    }

    pub fn created_user() -> Value {
        json!({ "type": "object", "required": ["id", "name", "role", "token"], "properties": {
            "id": id(), "name": string(), "email": nullable_string(), "role": string(), "token": string() } })
    }

    pub fn login() -> Value {
        json!({ "type": "object", "required": ["login", "password"], "properties": { "login": string(), "password": string() } })
    }

    pub fn user() -> Value {
        json!({ "type": "object", "required": ["id", "name", "role"], "properties": {
            "id": id(), "name": string(), "role": { "type": "string", "enum": ["admin", "setter", "user"] } } })
    }

    pub fn session() -> Value {
        json!({ "type": "object", "required": ["token", "tokenType", "expiresAt", "user"], "properties": {
            "token": string(), "tokenType": { "type": "string", "enum": ["Bearer"] }, "expiresAt": count(), "user": user() } })
    }

    pub fn new_password() -> Value {
        json!({ "type": "object", "required": ["password"], "properties": { "password": string(), "userId": id() } })
    }

    pub fn users() -> Value {
        json!({ "type": "object", "required": ["users"], "properties": { "users": { "type": "array", "items": {
            "type": "object", "required": ["id", "name", "role", "hasPassword", "activeTokens", "createdAt"], "properties": {
                "id": id(), "name": string(), "email": nullable_string(), "role": string(), "hasPassword": boolean(),
                "activeTokens": count(), "createdAt": string() } } } } })
    }

    pub fn new_role() -> Value {
        json!({ "type": "object", "required": ["role"], "additionalProperties": false, "properties": {
            "role": { "type": "string", "enum": ["admin", "setter", "user"] } } })
    }

    pub fn role_set() -> Value {
        json!({ "type": "object", "required": ["id", "role"], "properties": { "id": id(), "role": string() } })
    }

    pub fn user_deleted() -> Value {
        json!({ "type": "object", "required": ["deleted"], "properties": { "deleted": id() } })
    }

    pub fn tokens() -> Value {
        json!({ "type": "object", "required": ["userId", "tokens"], "properties": { "userId": id(), "tokens": { "type": "array", "items": {
            "type": "object", "required": ["id", "label", "createdAt", "revokedAt"], "properties": {
                "id": id(), "label": string(), "createdAt": string(), "revokedAt": nullable_string() } } } } })
    }

    pub fn new_token() -> Value {
        json!({ "type": "object", "additionalProperties": false, "properties": { "label": string() } })
    }

    pub fn issued_token() -> Value {
        json!({ "type": "object", "required": ["id", "userId", "label", "token"], "properties": {
            "id": { "type": ["integer", "null"] }, "userId": id(), "label": string(), "token": string() } })
    }

    pub fn token_revoked() -> Value {
        json!({ "type": "object", "required": ["revoked"], "properties": { "revoked": id() } })
    }

    pub fn sessions_ended() -> Value {
        json!({ "type": "object", "required": ["userId", "sessionsEnded"], "properties": { "userId": id(), "sessionsEnded": boolean() } })
    }

    pub fn password_set() -> Value {
        json!({ "type": "object", "required": ["userId", "passwordSet"], "properties": { "userId": id(), "passwordSet": boolean() } })
    }

    pub fn judge0_submission() -> Value {
        json!({ "type": "object", "required": ["source_code", "language_id"], "properties": {
            "source_code": string(), "language_id": id(), "stdin": nullable_string(), "expected_output": nullable_string(),
            "cpu_time_limit": { "type": "number" }, "wall_time_limit": { "type": "number" }, "memory_limit": { "type": "number" } } })
    }

    pub fn judge0_batch() -> Value {
        json!({ "type": "object", "required": ["submissions"], "properties": { "submissions": { "type": "array", "items": judge0_submission() } } })
    }

    // The dashboard's routes (api/dashboard.rs and its modules).

    fn number() -> Value {
        json!({ "type": "number" })
    }

    fn nullable_number() -> Value {
        json!({ "type": "number", "nullable": true })
    }

    fn nullable_id() -> Value {
        json!({ "type": "integer", "format": "int64", "minimum": 0, "nullable": true })
    }

    /// Any JSON value, null included.
    fn any() -> Value {
        json!({ "nullable": true })
    }

    fn run_status() -> Value {
        json!({ "type": "string", "enum": ["PENDING", "SUCCESS", "ERROR", "TIMEOUT", "MEMORY_EXCEEDED"] })
    }

    fn verdict() -> Value {
        json!({ "type": "string", "enum": ["AC", "WA", "TLE", "MLE", "RE", "OLE", "CE", "IE"] })
    }

    fn nullable_verdict() -> Value {
        json!({ "type": "string", "nullable": true, "enum": ["AC", "WA", "TLE", "MLE", "RE", "OLE", "CE", "IE", null] })
    }

    fn language() -> Value {
        json!({ "type": "string", "minLength": 1, "maxLength": 32 })
    }

    fn slug() -> Value {
        json!({ "type": "string", "minLength": 1, "maxLength": 64 })
    }

    fn code() -> Value {
        json!({ "type": "string", "minLength": 1 })
    }

    /// A solution of the shipped two_sum: the examples schemathesis sends first, so each
    /// run route is seen running real code at least once.
    const TWO_SUM: &str = "def two_sum(nums, target):\n    seen = {}\n    for i, n in enumerate(nums):\n        if target - n in seen:\n            return [seen[target - n], i]\n        seen[n] = i\n";

    pub fn execution_request() -> Value {
        json!({
            "type": "object",
            "required": ["algorithm", "language", "code", "input"],
            "additionalProperties": false,
            "properties": {
                "algorithm": slug(), "language": language(), "code": code(),
                "input": { "description": "The function's arguments: an object by parameter name, or an array in order" },
                "entryPoint": { "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$" },
            },
            "example": { "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "input": { "nums": [2, 7, 11, 15], "target": 9 } },
        })
    }

    pub fn execution_result() -> Value {
        json!({
            "type": "object",
            "required": ["executionId", "submissionId", "algorithm", "language", "status", "verdict", "success", "result", "error",
                "executionTime", "cpuTime", "wallTime", "memoryUsage", "cpuUsage", "output", "stepCount"],
            "properties": {
                "executionId": id(), "submissionId": id(), "algorithm": string(), "language": string(),
                "status": run_status(), "verdict": verdict(), "success": boolean(), "result": any(), "error": nullable_string(),
                "executionTime": number(), "cpuTime": number(), "wallTime": number(), "memoryUsage": number(),
                "cpuUsage": number(), "output": string(), "stepCount": count(),
            },
        })
    }

    pub fn execution_row() -> Value {
        json!({
            "type": "object",
            "required": ["id", "submissionId", "algorithm", "language", "kind", "status", "verdict", "createdAt"],
            "properties": {
                "id": id(), "submissionId": id(), "algorithm": string(), "language": string(),
                "kind": { "type": "string", "enum": ["EXECUTE", "TEST"] },
                "status": run_status(), "verdict": nullable_verdict(), "input": any(), "output": any(),
                "error": nullable_string(), "stepCount": count(), "passed": { "type": "integer", "nullable": true },
                "total": count(), "cpuTime": nullable_number(), "wallTime": nullable_number(), "memoryUsage": nullable_number(),
                "codeVersionId": nullable_id(), "createdAt": string(), "finishedAt": nullable_string(),
            },
        })
    }

    pub fn execution_page() -> Value {
        json!({
            "type": "object",
            "required": ["executions", "total", "page", "perPage"],
            "properties": { "executions": { "type": "array", "items": execution_row() }, "total": count(), "page": positive(), "perPage": positive() },
        })
    }

    pub fn version() -> Value {
        json!({
            "type": "object",
            "required": ["id", "userId", "algorithm", "language", "version", "note", "sha256", "size", "createdAt"],
            "properties": {
                "id": id(), "userId": id(), "algorithm": string(), "language": string(), "version": positive(),
                "note": string(), "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "size": count(), "createdAt": string(),
                "code": string(),
                "check": { "type": "object", "required": ["compiles"], "properties": { "compiles": boolean(), "verdict": nullable_verdict() } },
            },
        })
    }

    pub fn version_list() -> Value {
        json!({ "type": "object", "required": ["versions"], "properties": { "versions": { "type": "array", "items": version() } } })
    }

    pub fn version_input() -> Value {
        json!({
            "type": "object",
            "required": ["algorithm", "language", "code"],
            "additionalProperties": false,
            "properties": { "algorithm": slug(), "language": language(), "code": code(), "note": { "type": "string", "maxLength": 200 } },
            "example": { "algorithm": "two_sum", "language": "python", "code": TWO_SUM, "note": "a dictionary of seen values" },
        })
    }

    pub fn version_diff() -> Value {
        let side = json!({ "type": "object", "required": ["id", "version", "algorithm", "language"], "properties": {
            "id": id(), "version": positive(), "algorithm": string(), "language": string() } });
        json!({
            "type": "object",
            "required": ["from", "to", "added", "removed", "lines", "unified"],
            "properties": {
                "from": side.clone(), "to": side, "added": count(), "removed": count(),
                "lines": { "type": "array", "items": { "type": "object", "required": ["op", "oldLine", "newLine", "text"], "properties": {
                    "op": { "type": "string", "enum": ["equal", "add", "remove"] },
                    "oldLine": { "type": "integer", "minimum": 1, "nullable": true },
                    "newLine": { "type": "integer", "minimum": 1, "nullable": true },
                    "text": string() } } },
                "unified": string(),
            },
        })
    }

    pub fn testing_request() -> Value {
        json!({
            "type": "object",
            "required": ["algorithm"],
            "additionalProperties": false,
            "description": "The code and its language, or a saved version of the caller's (versionId), not both",
            "properties": { "algorithm": slug(), "language": language(), "code": code(), "versionId": positive() },
            "example": { "algorithm": "two_sum", "language": "python", "code": TWO_SUM },
        })
    }

    pub fn testing_result() -> Value {
        json!({
            "type": "object",
            "required": ["executionId", "submissionId", "algorithm", "language", "status", "verdict", "success", "passed", "failed", "total", "results", "newAchievements"],
            "properties": {
                "executionId": id(), "submissionId": id(), "algorithm": string(), "language": string(), "codeVersionId": nullable_id(),
                "status": run_status(), "verdict": verdict(), "success": boolean(), "passed": count(), "failed": count(), "total": count(),
                "cpuTime": number(), "wallTime": number(), "memoryUsage": number(), "error": nullable_string(),
                "results": { "type": "array", "items": { "type": "object", "required": ["testNumber", "sample", "passed", "verdict"], "properties": {
                    "testNumber": positive(), "sample": boolean(), "passed": boolean(), "verdict": nullable_verdict(),
                    "executionTime": nullable_number(), "cpuTime": nullable_number(), "wallTime": nullable_number(),
                    "memoryUsage": nullable_number(), "error": nullable_string(), "input": any(), "expected": any(), "actual": any() } } },
                "newAchievements": { "type": "array", "items": string() },
            },
        })
    }

    pub fn run_stats() -> Value {
        let aggregate = json!({ "type": "object", "required": ["avg", "min", "max"], "properties": {
            "avg": nullable_number(), "min": nullable_number(), "max": nullable_number() } });
        json!({
            "type": "object",
            "required": ["stats"],
            "properties": { "stats": { "type": "array", "items": { "type": "object",
                "required": ["algorithm", "name", "language", "count", "finished", "succeeded", "successRate", "cpuTimeMs", "memoryMb"],
                "properties": {
                    "algorithm": string(), "name": string(), "language": string(), "count": count(), "finished": count(), "succeeded": count(),
                    "successRate": { "type": "number", "minimum": 0, "maximum": 1, "nullable": true },
                    "cpuTimeMs": aggregate.clone(), "memoryMb": aggregate,
                } } } },
        })
    }

    pub fn leaderboard() -> Value {
        json!({
            "type": "object",
            "required": ["algorithm", "language", "entries"],
            "properties": {
                "algorithm": string(), "language": nullable_string(),
                "entries": { "type": "array", "items": { "type": "object",
                    "required": ["rank", "userId", "user", "language", "cpuTime", "memoryUsage", "executionId", "achievedAt"],
                    "properties": { "rank": positive(), "userId": id(), "user": string(), "language": string(), "cpuTime": number(),
                        "memoryUsage": number(), "executionId": id(), "achievedAt": string() } } },
            },
        })
    }

    fn progress_status() -> Value {
        json!({ "type": "string", "enum": ["NOT_STARTED", "IN_PROGRESS", "COMPLETED", "MASTERED"] })
    }

    pub fn progress() -> Value {
        json!({
            "type": "object",
            "required": ["userId", "summary", "progress"],
            "properties": {
                "userId": id(),
                "summary": { "type": "object", "required": ["NOT_STARTED", "IN_PROGRESS", "COMPLETED", "MASTERED"], "properties": {
                    "NOT_STARTED": count(), "IN_PROGRESS": count(), "COMPLETED": count(), "MASTERED": count() } },
                "progress": { "type": "array", "items": { "type": "object", "required": ["algorithm", "status", "attempts"], "properties": {
                    "algorithm": string(), "name": string(), "difficulty": string(), "category": string(), "status": progress_status(),
                    "attempts": count(), "bestTime": nullable_number(), "bestMemory": nullable_number(), "completedAt": nullable_string() } } },
            },
        })
    }

    pub fn achievements() -> Value {
        let kind = json!({ "type": "string", "enum": ["FIRST_SOLUTION", "PERFORMANCE_CHAMPION", "COMPLEXITY_MASTER", "STREAK_KEEPER", "ALGORITHM_EXPLORER", "OPTIMIZATION_GURU"] });
        json!({
            "type": "object",
            "required": ["userId", "points", "unlocked", "achievements"],
            "properties": {
                "userId": id(), "points": count(),
                "unlocked": { "type": "array", "items": { "type": "object", "required": ["type", "points", "unlockedAt"], "properties": {
                    "type": kind.clone(), "title": string(), "description": string(), "points": count(), "unlockedAt": string() } } },
                "achievements": { "type": "array", "items": { "type": "object", "required": ["type", "points", "unlocked"], "properties": {
                    "type": kind, "title": string(), "description": string(), "points": count(), "unlocked": boolean(),
                    "unlockedAt": nullable_string() } } },
                "optimizationFactor": number(),
            },
        })
    }

    fn benchmark_summary_properties() -> Value {
        json!({
            "id": id(), "algorithmName": string(), "language": string(), "inputKind": string(), "seed": count(),
            "sourceSha256": string(), "createdAt": string(), "stoppedEarly": nullable_string(), "sizes": count(),
            "bestFit": any(), "confidence": any(), "memoryFit": any(),
        })
    }

    pub fn benchmark_page() -> Value {
        json!({
            "type": "object",
            "required": ["benchmarks", "total", "page", "perPage"],
            "properties": {
                "benchmarks": { "type": "array", "items": { "type": "object", "required": ["id", "algorithmName", "language"], "properties": benchmark_summary_properties() } },
                "total": count(), "page": positive(), "perPage": positive(),
            },
        })
    }

    pub fn benchmark() -> Value {
        let mut properties = benchmark_summary_properties();
        properties["results"] = json!({ "type": "array", "items": { "type": "object" } });
        properties["complexityAnalysis"] = any();
        properties["memoryAnalysis"] = any();
        properties["seedMethod"] = any();
        json!({ "type": "object", "required": ["id", "algorithmName", "language", "results"], "properties": properties })
    }

    pub fn benchmark_comparison() -> Value {
        let side = json!({ "type": "object", "required": ["id", "algorithmName", "language"], "properties": {
            "id": id(), "algorithmName": string(), "language": string(), "complexityAnalysis": any(), "memoryAnalysis": any() } });
        json!({
            "type": "object",
            "required": ["a", "b", "speedups"],
            "properties": {
                "a": side.clone(), "b": side,
                "speedups": { "type": "array", "items": { "type": "object", "required": ["inputSize"], "properties": {
                    "inputSize": count(), "timeA": number(), "timeB": number(), "speedup": nullable_number() } } },
            },
        })
    }

    // The cluster (cluster/api.rs).

    pub fn cluster_node() -> Value {
        json!({
            "type": "object",
            "required": ["id", "address", "reachable"],
            "properties": {
                "id": id(), "address": string(), "reachable": boolean(),
                "role": string(),
                "term": count(), "leader": nullable_id(), "commit": count(), "applied": count(),
                "snapshot_index": count(), "installed_snapshot": nullable_id(),
                "voters": { "type": "array", "items": id() },
                "cluster_id": nullable_string(),
            },
        })
    }

    pub fn cluster() -> Value {
        json!({ "type": "object", "required": ["leader", "nodes"], "properties": {
            "leader": nullable_id(), "voters": { "type": "array", "items": id() },
            "nodes": { "type": "array", "items": cluster_node() } } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_unique_and_readable() {
        assert_eq!(operation_id("get", "/api/algorithms/{slug}"), "get_api_algorithms_By_slug");
        assert_eq!(operation_id("get", "/api/openapi.json"), "get_api_openapi_json");
        let ops = super::super::routes();
        let mut ids: Vec<String> = ops.iter().map(|op| operation_id(op.method.as_str(), op.path)).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "two routes share an operationId");
    }

    #[test]
    fn every_route_is_in_the_document_with_its_path_parameters() {
        let ops = super::super::routes();
        let doc = document(&ops, false);
        for op in &ops {
            let method = op.method.as_str().to_lowercase();
            let operation = &doc["paths"][op.path][&method];
            assert!(operation.is_object(), "{method} {} is not documented", op.path);
            let names: Vec<&str> = op.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(names, declared, "path parameters of {method} {}", op.path);
            assert!(operation["responses"]["4XX"].is_object());
        }
        // Runs need a credential when anonymous runs are off, and not otherwise.
        assert_eq!(doc["paths"]["/api/submissions"]["post"]["security"].as_array().map(Vec::len), Some(2));
        let open = document(&ops, true);
        assert_eq!(open["paths"]["/api/submissions"]["post"]["security"][0], json!({}));
        assert!(open["paths"]["/api/algorithms"]["get"].get("security").is_none());
    }
}
