//! Request extractors whose rejections are [`ApiError`]s, so a malformed
//! body, query or path answers the same JSON error shape as everything else.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`); 400 `malformed_body`
/// with the failing field path when it does not deserialise.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// A query string; 400 `malformed_query` when it does not deserialise.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; 400 `malformed_path` when they do not deserialise.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
