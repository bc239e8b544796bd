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
    validation.validate_nbf = true;
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<LocalClaims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => unauthorized("the token has expired"),
                    ErrorKind::ImmatureSignature => unauthorized("the token is not valid yet"),
                    ErrorKind::InvalidSignature => unauthorized("the token's signature is invalid"),
                    _ => unauthorized("the token is malformed"),
                }
            })?;
    if data.claims.sub.is_empty() {
        return Err(unauthorized("the token names no user"));
    }
    Ok(UserId(data.claims.sub))
}

/// The shortest `AUTH_LOCAL_SECRET` accepted: an HS256 key shorter than its hash is guessable.
pub const MIN_LOCAL_SECRET: usize = 32;

/// The HS256 secret of local tokens, from `AUTH_LOCAL_SECRET` (unset or empty: none). A secret
/// shorter than [`MIN_LOCAL_SECRET`] bytes is refused: the function does not start.
pub fn local_secret_from_env() -> Result<Option<Vec<u8>>, crate::ConfigError> {
    local_secret(std::env::var("AUTH_LOCAL_SECRET").ok())
}

fn local_secret(value: Option<String>) -> Result<Option<Vec<u8>>, crate::ConfigError> {
    match value.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.len() < MIN_LOCAL_SECRET => Err(crate::ConfigError {
            var: "AUTH_LOCAL_SECRET",
            problem: format!(
                "is {} bytes; at least {MIN_LOCAL_SECRET} are needed",
                s.len()
            ),
        }),
        Some(s) => Ok(Some(s.into_bytes())),
    }
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
    #[serde(default)]
    aud: Option<OneOrMany>,
    /// Cognito access tokens name the app client here instead of in `aud`.
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn contains(&self, wanted: &[String]) -> bool {
        match self {
            OneOrMany::One(a) => wanted.contains(a),
            OneOrMany::Many(all) => all.iter().any(|a| wanted.contains(a)),
        }
    }
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
        let audiences = audiences(&std::env::var("JWT_AUDIENCE").unwrap_or_default())
            .map_err(|e| AppError::Internal(e.to_string()))?;
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
        Self::from_keys(issuer, audiences, keys)
    }

    /// A verifier over decoding keys (by `kid`). Refuses an empty audience list: a verifier
    /// that accepted every audience would take any token the issuer signed for any app.
    pub fn from_keys(
        issuer: &str,
        audiences: Vec<String>,
        keys: Vec<(Option<String>, DecodingKey)>,
    ) -> Result<Self, AppError> {
        if audiences.is_empty() {
            return Err(AppError::Internal(
                "JWT_AUDIENCE lists no audience: refusing to accept every audience".into(),
            ));
        }
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
        // The audience is checked below: `aud`, or a Cognito access token's `client_id`, as
        // the HTTP API's JWT authorizer accepts either.
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Subject>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => unauthorized("the token has expired"),
                ErrorKind::ImmatureSignature => unauthorized("the token is not valid yet"),
                ErrorKind::InvalidSignature => unauthorized("the token's signature is invalid"),
                ErrorKind::InvalidIssuer => unauthorized("the token's issuer is not accepted"),
                _ => unauthorized("the token is malformed"),
            }
        })?;
        let c = data.claims;
        let audience_ok = match (&c.aud, &c.client_id) {
            (Some(aud), _) => aud.contains(&self.audiences),
            (None, Some(client)) => self.audiences.contains(client),
            (None, None) => false,
        };
        if !audience_ok {
            return Err(unauthorized("the token's audience is not accepted"));
        }
        if c.sub.is_empty() {
            return Err(unauthorized("the token names no user"));
        }
        Ok(UserId(c.sub))
    }
}

/// The audiences of `JWT_AUDIENCE` (comma-separated); none is an error.
fn audiences(value: &str) -> Result<Vec<String>, crate::ConfigError> {
    let list: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        return Err(crate::ConfigError {
            var: "JWT_AUDIENCE",
            problem: "lists no audience (with JWT_ISSUER set, at least one is required)".into(),
        });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 key made for these tests only.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsQIWR/k3+/2j3pvN
CkGQ8OToxxjCwCnzt5zpgZ8KcU2hRANCAAQGi5aplvYyTO+cLA/Tobr9YgbIG8l8
Efu+teoltEuoFPWf9KqBTj77LrvzVCO3jweVRxbCKo/GZRi8CnOnhbFI
-----END PRIVATE KEY-----";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBouWqZb2MkzvnCwP06G6/WIGyBvJ
fBH7vrXqJbRLqBT1n/SqgU4++y6781Qjt48HlUcWwiqPxmUYvApzp4WxSA==
-----END PUBLIC KEY-----";

    fn verifier() -> OidcVerifier {
        let key = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
        OidcVerifier::from_keys(
            "https://issuer.test",
            vec!["collab".into()],
            vec![(Some("k1".into()), key)],
        )
        .unwrap()
    }

    fn sign(claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn oidc_tokens_need_a_listed_audience_or_client_id_and_a_passed_nbf() {
        let v = verifier();
        let base = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "exp": now() + 600});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            sign(c)
        };
        assert_eq!(
            v.verify(&base(serde_json::json!({"aud": "collab"})))
                .unwrap()
                .0,
            "alice"
        );
        assert!(
            v.verify(&base(serde_json::json!({"aud": ["x", "collab"]})))
                .is_ok()
        );
        // A Cognito access token: no `aud`, the app client in `client_id`.
        assert!(
            v.verify(&base(
                serde_json::json!({"client_id": "collab", "token_use": "access"})
            ))
            .is_ok()
        );
        for (claims, why) in [
            (serde_json::json!({"aud": "other"}), "audience"),
            (serde_json::json!({"client_id": "other"}), "audience"),
            (serde_json::json!({}), "audience"),
            (
                serde_json::json!({"aud": "collab", "nbf": now() + 600}),
                "not valid yet",
            ),
        ] {
            let err = v.verify(&base(claims.clone())).unwrap_err().to_string();
            assert!(err.contains(why), "{claims}: {err}");
        }
    }

    #[test]
    fn an_empty_audience_list_and_a_short_local_secret_refuse_to_start() {
        assert!(audiences(" , ").is_err());
        assert_eq!(audiences("a, b").unwrap(), vec!["a", "b"]);
        let key = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
        assert!(OidcVerifier::from_keys("https://issuer.test", vec![], vec![(None, key)]).is_err());
        assert!(local_secret(Some("short-secret".into())).is_err());
        assert_eq!(local_secret(None).unwrap(), None);
        assert_eq!(local_secret(Some(String::new())).unwrap(), None);
        assert!(local_secret(Some("x".repeat(32))).unwrap().is_some());
    }

    #[test]
    fn a_local_token_before_its_nbf_is_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        let err = verify_local_token(secret, &token).unwrap_err().to_string();
        assert!(err.contains("not valid yet"), "{err}");
        assert!(verify_local_token(secret, &issue_local_token(secret, "bob", 60)).is_ok());
    }
}
