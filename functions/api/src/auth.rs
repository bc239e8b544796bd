//! Who is calling. In AWS the HTTP API's JWT authorizer has validated the token and put its
//! claims in the request context: the caller is the `sub` claim. Locally there is no authorizer:
//! when `AUTH_LOCAL_SECRET` is set, a bearer token signed with it (HS256) is verified here. With
//! neither, the request is refused with 401. A user id in a request body is never trusted.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use lambda_http::request::RequestContext;

use collab::{AppError, UserId};

use crate::App;
use crate::error::ApiError;

/// How callers are identified when no authorizer ran.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// HS256 secret for local bearer tokens.
    pub local_secret: Option<Vec<u8>>,
}

impl AuthConfig {
    /// From `AUTH_LOCAL_SECRET` (unset: only authorizer claims are accepted; shorter than 32
    /// bytes: an error, the function does not start).
    pub fn from_env() -> Result<Self, collab::ConfigError> {
        Ok(AuthConfig {
            local_secret: collab::auth::local_secret_from_env()?,
        })
    }
}

pub use collab::auth::{LocalClaims, issue_local_token};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub UserId);

fn unauthorized(why: &str) -> ApiError {
    ApiError(AppError::Unauthorized(why.to_owned()))
}

/// The `sub` claim the JWT authorizer put in the request context, if any.
fn authorizer_subject(parts: &Parts) -> Option<String> {
    match parts.extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()?
            .jwt
            .as_ref()?
            .claims
            .get("sub")
            .cloned(),
        _ => None,
    }
}

/// Verifies a local bearer token from an `Authorization` header.
pub fn verify_local(secret: &[u8], header: Option<&str>) -> Result<UserId, ApiError> {
    let token = collab::auth::bearer(header)?;
    Ok(collab::auth::verify_local_token(secret, token)?)
}

impl<P: Send + Sync + 'static> FromRequestParts<Arc<App<P>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App<P>>,
    ) -> Result<Self, Self::Rejection> {
        let caller = if let Some(sub) = authorizer_subject(parts).filter(|s| !s.is_empty()) {
            Ok(Caller(UserId(sub)))
        } else {
            match &app.auth.local_secret {
                Some(secret) => {
                    let header = parts
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    verify_local(secret, header).map(Caller)
                }
                None => Err(unauthorized(
                    "no credentials: the request carries no authorizer claims",
                )),
            }
        };
        // Every log line of the request names its user (the request span's `user` field).
        if let Ok(Caller(user)) = &caller {
            tracing::Span::current().record("user", user.0.as_str());
        }
        caller
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    #[test]
    fn local_tokens_verify_and_bad_ones_say_why() {
        let secret = b"s3cret";
        let good = issue_local_token(secret, "alice", 60);
        assert_eq!(
            verify_local(secret, Some(&format!("Bearer {good}")))
                .unwrap()
                .0,
            "alice"
        );
        let cases = [
            (None, "missing"),
            (Some("Basic abc".to_owned()), "Bearer"),
            (Some("Bearer not.a.jwt".to_owned()), "malformed"),
            (
                Some(format!(
                    "Bearer {}",
                    issue_local_token(b"other", "alice", 60)
                )),
                "signature",
            ),
        ];
        for (header, why) in cases {
            let err = verify_local(secret, header.as_deref()).unwrap_err();
            assert_eq!(err.0.status(), 401);
            assert!(
                err.0.to_string().contains(why),
                "{err:?} should mention {why}"
            );
        }
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &LocalClaims {
                sub: "alice".into(),
                exp: 1,
            },
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert!(
            verify_local(secret, Some(&format!("Bearer {expired}")))
                .unwrap_err()
                .0
                .to_string()
                .contains("expired")
        );
    }
}
