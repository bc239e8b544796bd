//! Bearer tokens the functions verify themselves.
//!
//! - Local tokens (HS256, signed with `AUTH_LOCAL_SECRET`): when no API Gateway authorizer ran
//!   (`make dev`, tests).
//! - OIDC tokens (RS256 and other asymmetric algorithms, checked against the issuer's published
//!   keys, its `iss` and `aud`): the realtime function's `$connect` in AWS, where browsers cannot
//!   set an `Authorization` header on a WebSocket and pass the token in the URL or subprotocol.
//!   The keys are fetched when first needed and again (rate-limited) when a token names an
//!   unknown one, each fetch bounded in time.
//!
//! Both report the token's expiry ([`Verified`]), so a WebSocket opened with it can be closed
//! when it ends.
//!
//! The HTTP API needs neither in AWS: its JWT authorizer verifies tokens and the api function
//! reads the claims.

use std::sync::Arc;
use std::time::Duration;

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
    verify_local(secret, token).map(|v| v.user)
}

/// [`verify_local_token`], with the token's expiry.
pub fn verify_local(secret: &[u8], token: &str) -> Result<Verified, AppError> {
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
    Ok(Verified {
        user: UserId(data.claims.sub),
        expires_at: i64::try_from(data.claims.exp).unwrap_or(i64::MAX),
    })
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

/// How long one fetch of the issuer's keys (discovery and key set) may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The least time between two fetches of the issuer's keys after one succeeded: a flood of
/// tokens with unknown `kid`s costs the issuer one request per interval, not one per token.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// The least time between two fetches after one failed.
pub const JWKS_RETRY_INTERVAL: Duration = Duration::from_secs(5);

type Keys = Arc<Vec<(Option<String>, DecodingKey)>>;

/// Verifies OIDC tokens against an issuer's keys (JWKS).
///
/// The keys are fetched lazily, at the first token, so a function starts without network access
/// to the issuer; a fetch is bounded by [`JWKS_FETCH_TIMEOUT`]. A token signed with a key not
/// in the set (a rotation) refetches it, at most once per [`JWKS_REFETCH_INTERVAL`] (or
/// [`JWKS_RETRY_INTERVAL`] after a failure); while the issuer cannot be reached and no key is
/// known, tokens are refused as 503 (retry), not 401.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audiences: Vec<String>,
    /// `None` for a fixed key set (tests).
    http: Option<reqwest::Client>,
    keys: std::sync::RwLock<Keys>,
    /// When the last fetch was tried and whether it succeeded; held while fetching, so
    /// concurrent verifications share one fetch.
    last_fetch: tokio::sync::Mutex<Option<(tokio::time::Instant, bool)>>,
}

/// A verified token: its user and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The token's subject.
    pub user: UserId,
    /// Its `exp`, seconds since the epoch: a WebSocket opened with it is closed then.
    pub expires_at: i64,
}

#[derive(Deserialize)]
struct Subject {
    sub: String,
    exp: i64,
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

fn usable_keys(jwks: &jsonwebtoken::jwk::JwkSet) -> Vec<(Option<String>, DecodingKey)> {
    jwks.keys
        .iter()
        .filter_map(|k| Some((k.common.key_id.clone(), DecodingKey::from_jwk(k).ok()?)))
        .collect()
}

impl OidcVerifier {
    /// A verifier of `issuer`'s tokens for `audiences`, whose keys are fetched when first
    /// needed: `jwks_uri` of the issuer's OpenID configuration, or
    /// `{issuer}/.well-known/jwks.json` (Cognito's layout). Nothing is fetched here. Refuses an
    /// empty audience list: a verifier that accepted every audience would take any token the
    /// issuer signed for any app.
    pub fn new(issuer: &str, audiences: Vec<String>) -> Result<Self, crate::ConfigError> {
        check_audiences(&audiences)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(1000))
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .map_err(|e| crate::ConfigError {
                var: "JWT_ISSUER",
                problem: format!("no HTTP client: {e}"),
            })?;
        Ok(Self::build(issuer, audiences, Some(http), Vec::new()))
    }

    fn build(
        issuer: &str,
        audiences: Vec<String>,
        http: Option<reqwest::Client>,
        keys: Vec<(Option<String>, DecodingKey)>,
    ) -> Self {
        OidcVerifier {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                audiences,
                http,
                keys: std::sync::RwLock::new(Arc::new(keys)),
                last_fetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The verifier of `JWT_ISSUER`, for the audiences listed in `JWT_AUDIENCE` (comma-separated);
    /// `None` when `JWT_ISSUER` is unset or empty. Fetches nothing.
    pub fn from_env() -> Result<Option<Self>, crate::ConfigError> {
        let Some(issuer) = std::env::var("JWT_ISSUER").ok().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let audiences = audiences(&std::env::var("JWT_AUDIENCE").unwrap_or_default())?;
        Self::new(&issuer, audiences).map(Some)
    }

    /// A verifier over a fixed key set, never refetched.
    pub fn from_jwks(
        issuer: &str,
        audiences: Vec<String>,
        jwks: &jsonwebtoken::jwk::JwkSet,
    ) -> Result<Self, AppError> {
        Self::from_keys(issuer, audiences, usable_keys(jwks))
    }

    /// A verifier over fixed decoding keys (by `kid`), never refetched.
    pub fn from_keys(
        issuer: &str,
        audiences: Vec<String>,
        keys: Vec<(Option<String>, DecodingKey)>,
    ) -> Result<Self, AppError> {
        check_audiences(&audiences).map_err(|e| AppError::Internal(e.to_string()))?;
        if keys.is_empty() {
            return Err(AppError::Internal(format!(
                "the issuer {issuer} publishes no usable key"
            )));
        }
        Ok(Self::build(issuer, audiences, None, keys))
    }

    fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.inner.keys.read().ok()?.clone();
        keys.iter()
            .find(|(k, _)| kid.is_none() || k.as_deref() == kid)
            .map(|(_, key)| key.clone())
    }

    /// Fetches the key set again unless a fetch ran too recently. `Err` only when the fetch
    /// failed and no key is known at all.
    async fn refresh(&self) -> Result<(), AppError> {
        let Some(http) = &self.inner.http else {
            return Ok(());
        };
        let mut last = self.inner.last_fetch.lock().await;
        let none_known = self.inner.keys.read().map(|k| k.is_empty()).unwrap_or(true);
        if let Some((at, ok)) = *last {
            let wait = if ok {
                JWKS_REFETCH_INTERVAL
            } else {
                JWKS_RETRY_INTERVAL
            };
            if at.elapsed() < wait {
                return if none_known {
                    Err(AppError::Unavailable(format!(
                        "the keys of {} could not be fetched; retry shortly",
                        self.inner.issuer
                    )))
                } else {
                    Ok(())
                };
            }
        }
        let fetched = tokio::time::timeout(
            JWKS_FETCH_TIMEOUT + Duration::from_millis(500),
            fetch_keys(http, &self.inner.issuer),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        *last = Some((tokio::time::Instant::now(), fetched.is_ok()));
        match fetched {
            Ok(keys) => {
                tracing::info!(issuer = %self.inner.issuer, keys = keys.len(), "fetched the issuer's keys");
                if let Ok(mut k) = self.inner.keys.write() {
                    *k = Arc::new(keys);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.inner.issuer, error = %e, "fetching the issuer's keys failed");
                if none_known {
                    Err(AppError::Unavailable(format!(
                        "the keys of {} could not be fetched ({e}); retry shortly",
                        self.inner.issuer
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The token's subject and expiry, if its signature, issuer, audience, `nbf` and expiry hold.
    /// Fetches the issuer's keys when the token's key is not known yet (see the type's doc).
    pub async fn verify(&self, token: &str) -> Result<Verified, AppError> {
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
        let kid = header.kid.as_deref();
        let key = match self.key(kid) {
            Some(k) => k,
            None => {
                self.refresh().await?;
                self.key(kid)
                    .ok_or_else(|| unauthorized("the token's key is unknown"))?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.inner.issuer]);
        // The audience is checked below: `aud`, or a Cognito access token's `client_id`, as
        // the HTTP API's JWT authorizer accepts either.
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Subject>(token, &key, &validation).map_err(|e| {
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
            (Some(aud), _) => aud.contains(&self.inner.audiences),
            (None, Some(client)) => self.inner.audiences.contains(client),
            (None, None) => false,
        };
        if !audience_ok {
            return Err(unauthorized("the token's audience is not accepted"));
        }
        if c.sub.is_empty() {
            return Err(unauthorized("the token names no user"));
        }
        Ok(Verified {
            user: UserId(c.sub),
            expires_at: c.exp,
        })
    }
}

/// The issuer's key set: `jwks_uri` of its OpenID configuration, or
/// `{issuer}/.well-known/jwks.json`.
async fn fetch_keys(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    let base = issuer.trim_end_matches('/');
    let jwks_uri = match http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|c| c.get("jwks_uri")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{base}/.well-known/jwks.json")),
        Ok(_) => format!("{base}/.well-known/jwks.json"),
        Err(e) => return Err(e.to_string()),
    };
    let r = http.get(jwks_uri).send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("the key set answered {}", r.status()));
    }
    let jwks: jsonwebtoken::jwk::JwkSet = r.json().await.map_err(|e| e.to_string())?;
    let keys = usable_keys(&jwks);
    if keys.is_empty() {
        return Err("the key set holds no usable key".into());
    }
    Ok(keys)
}

fn check_audiences(audiences: &[String]) -> Result<(), crate::ConfigError> {
    if audiences.iter().all(|a| a.trim().is_empty()) {
        return Err(crate::ConfigError {
            var: "JWT_AUDIENCE",
            problem: "lists no audience: refusing to accept every audience".into(),
        });
    }
    Ok(())
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

    #[tokio::test]
    async fn oidc_tokens_need_a_listed_audience_or_client_id_and_a_passed_nbf() {
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
                .await
                .unwrap()
                .user
                .0,
            "alice"
        );
        assert!(
            v.verify(&base(serde_json::json!({"aud": ["x", "collab"]})))
                .await
                .is_ok()
        );
        // A Cognito access token: no `aud`, the app client in `client_id`.
        assert!(
            v.verify(&base(
                serde_json::json!({"client_id": "collab", "token_use": "access"})
            ))
            .await
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
            let err = v
                .verify(&base(claims.clone()))
                .await
                .unwrap_err()
                .to_string();
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
