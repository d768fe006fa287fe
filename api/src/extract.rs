//! Request extractors whose rejections are [`ApiError`]s, so a malformed
//! body, query or path answers the same JSON error shape as everything else.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`); 400 `malformed_body`
/// with the failing field path when it does not deserialise.
///
/// A number with a zero fraction (`2.0`) is taken as the integer it is:
/// JSON Schema's `integer` admits it (so generated clients send it), serde
/// refuses it for an `i64` field.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(mut value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        integral_floats_as_integers(&mut value);
        serde_path_to_error::deserialize(value).map(Body).map_err(|e| ApiError::Malformed {
            code: "malformed_body",
            message: format!("Failed to deserialize the JSON body into the target type: {e}"),
        })
    }
}

/// Rewrites, in place, every number of `v` that has a zero fraction and
/// fits an `i64` (`2.0`, `-171.0`) as that integer.
fn integral_floats_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                *v = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(m) => m.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// A query string; 400 `malformed_query` when it does not deserialise.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; 400 `malformed_path` when they do not deserialise.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut v = serde_json::json!({"a": 2.0, "b": [-171.0, 1.5, 3], "c": {"d": 1e300, "e": "2.0"}});
        super::integral_floats_as_integers(&mut v);
        assert_eq!(v, serde_json::json!({"a": 2, "b": [-171, 1.5, 3], "c": {"d": 1e300, "e": "2.0"}}));
        assert!(v["a"].is_i64());
    }
}
