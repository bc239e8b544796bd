//! Bearer tokens the functions verify themselves.
//!
//! - Local tokens (HS256, signed with `AUTH_LOCAL_SECRET`): when no API Gateway authorizer ran
//!   (`make dev`, tests).
//! - OIDC tokens (RS256 and other asymmetric algorithms, checked against the issuer's published
//!   keys, its `iss` and `aud`): the realtime function's `$connect` in AWS, where browsers cannot
//!   set an `Authorization` header on a WebSocket and pass the token in the URL or subprotocol.
//!
//! The HTTP API needs neither in AWS: its JWT authorizer verifies tokens and the api function
//! reads the claims.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::ids::UserId;

/// The claims of a local token.
#[derive(Debug, Serialize, Deserialize)]
pub struct LocalClaims {
    /// The user.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

/// Signs a local token for `user`, valid for `ttl_secs` (for `make dev` and tests).
pub fn issue_local_token(secret: &[u8], user: &str, ttl_secs: u64) -> String {
    let exp = chrono::Utc::now().timestamp().max(0) as u64 + ttl_secs;
    let claims = LocalClaims {
        sub: user.to_owned(),
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

fn unauthorized(why: &str) -> AppError {
    AppError::Unauthorized(why.to_owned())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Result<&str, AppError> {
    let header =
        header.ok_or_else(|| unauthorized("missing Authorization header (Bearer token)"))?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// Verifies a local token: signature, expiry, a non-empty `sub`.
pub fn verify_local_token(secret: &[u8], token: &str) -> Result<UserId, AppError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<LocalClaims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => unauthorized("the token has expired"),
                    ErrorKind::InvalidSignature => unauthorized("the token's signature is invalid"),
                    _ => unauthorized("the token is malformed"),
                }
            })?;
    if data.claims.sub.is_empty() {
        return Err(unauthorized("the token names no user"));
    }
    Ok(UserId(data.claims.sub))
}

/// The HS256 secret of local tokens, from `AUTH_LOCAL_SECRET` (unset or empty: none).
pub fn local_secret_from_env() -> Option<Vec<u8>> {
    std::env::var("AUTH_LOCAL_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes)
}

/// Verifies OIDC tokens against an issuer's keys (JWKS), fetched once at start.
#[derive(Clone)]
pub struct OidcVerifier {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<(Option<String>, DecodingKey)>,
}

#[derive(Deserialize)]
struct Subject {
    sub: String,
}

impl OidcVerifier {
    /// Fetches the issuer's keys: `jwks_uri` of its OpenID configuration, or
    /// `{issuer}/.well-known/jwks.json` (Cognito's layout).
    pub async fn discover(issuer: &str, audiences: Vec<String>) -> Result<Self, AppError> {
        let http = reqwest::Client::new();
        let base = issuer.trim_end_matches('/');
        let fail = |e: reqwest::Error| {
            AppError::Unavailable(format!("fetching the keys of {issuer}: {e}"))
        };
        let jwks_uri = match http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|c| {
                    c.get("jwks_uri")
                        .and_then(|u| u.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("{base}/.well-known/jwks.json")),
            _ => format!("{base}/.well-known/jwks.json"),
        };
        let jwks: jsonwebtoken::jwk::JwkSet = http
            .get(jwks_uri)
            .send()
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        Self::from_jwks(issuer, audiences, &jwks)
    }

    /// The verifier of `JWT_ISSUER`, for the audiences listed in `JWT_AUDIENCE` (comma-separated);
    /// `None` when `JWT_ISSUER` is unset or empty.
    pub async fn from_env() -> Result<Option<Self>, AppError> {
        let Some(issuer) = std::env::var("JWT_ISSUER").ok().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let audiences = std::env::var("JWT_AUDIENCE")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Self::discover(&issuer, audiences).await.map(Some)
    }

    /// A verifier over known keys.
    pub fn from_jwks(
        issuer: &str,
        audiences: Vec<String>,
        jwks: &jsonwebtoken::jwk::JwkSet,
    ) -> Result<Self, AppError> {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|k| Some((k.common.key_id.clone(), DecodingKey::from_jwk(k).ok()?)))
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Err(AppError::Internal(format!(
                "the issuer {issuer} publishes no usable key"
            )));
        }
        Ok(OidcVerifier {
            issuer: issuer.to_owned(),
            audiences,
            keys,
        })
    }

    /// The token's subject, if its signature, issuer, audience and expiry hold.
    pub fn verify(&self, token: &str) -> Result<UserId, AppError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("the token is malformed"))?;
        // Only asymmetric algorithms: a token signed with a public key as an HMAC secret
        // must not pass.
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(unauthorized("the token's algorithm is not accepted"));
        }
        let key = self
            .keys
            .iter()
            .find(|(kid, _)| header.kid.is_none() || kid.as_deref() == header.kid.as_deref())
            .map(|(_, k)| k)
            .ok_or_else(|| unauthorized("the token's key is unknown"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Subject>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthorized("the token has expired"),
                ErrorKind::InvalidSignature => unauthorized("the token's signature is invalid"),
                ErrorKind::InvalidIssuer => unauthorized("the token's issuer is not accepted"),
                ErrorKind::InvalidAudience => unauthorized("the token's audience is not accepted"),
                _ => unauthorized("the token is malformed"),
            }
        })?;
        Ok(UserId(data.claims.sub))
    }
}
