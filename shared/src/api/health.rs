//! `GET /health`: liveness only: no data, no storage call, no authentication.

use axum::http::StatusCode;
use axum::response::Response;

use super::respond::json;

pub async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}
