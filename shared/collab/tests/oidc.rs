//! OIDC token verification against a key set (a throwaway RSA key and a throwaway P-256 key made
//! for this test), and the key set's lazy, bounded, rate-limited fetching from a local issuer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use collab::auth::OidcVerifier;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://issuer.example.com/pool";
/// A throwaway 2048-bit key generated for this test only.
const PRIVATE_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAysGdSoZHeG80Wp/R7rH6VXS1rq87HfYDssTK/efY/0iHCCjw
I2EwJE8uux3UufUZkt74ejam+J0+o+xsQE3xgrc+pa49IXb30ttpGl76FEBgpXY8
KvjjJwCDL5uhxSMiU+/SxVZqIvV3suPvmcGlKKt+jU1dgYAnftpGNpAxtHSpuZ1I
Rq6pO1LsX+K7obtg9QassfkOR5ugRjIvQg2RaMd29kpgAVC3sTTUFX+KbWtq6pdy
2C/2GEXLUN1tkuDaFIlpckJlp5sFby3ePThzYX7+3d6nHCooeBxtuDJTgjM88jm+
LOE4LcV3SBoLBvJKQZTpdn8veD4BEdrghXUtwQIDAQABAoIBABnI9qZoHkW4KrnN
smZ/Nt1QStysx0FfrIe7FC+nIQcSI64LesKdFQDBGynLuOZvP7HYblQoiCJ86N7y
7a9d2jVr9WkfmAGd/hVQNvUWGAqkR0Yzm6JBZa3rmENhMPj/p1lyWeUjwLqyaecT
qsBsioL6EE2LBbW25Q7yVlSREOkoZQeg8UdpSIbCCK6fJcIvRhcAnmxPAi9BMLUN
GJeF9DjCHIhqqdVVSZrUDOksQb6cnxDzlSu2ve8nc8uNqNUhlML4yl960vG/SWZZ
arOfcJZWIJAVs24TUIdvG3StX2PpnUAldGtBVntG9BqkQLCl0SmiA/8qBxXkRR9X
q8LU18MCgYEA6dWqj2zNTmiYmlEtDzJMuDF/wZwVCha+1CRIGPf4yaeOKvrhdzKl
4KVKh/z+g+jDOebScCh5J1XYPk3PWWFEaYWNML/aKZeczEkfMNuPjrd9j5oSDSNQ
JTUnNB8gVewqJlDNcufi562hcid7d0/BANM9qCzXRuUsQCJXoMcYB9MCgYEA3fnJ
sFEOJ9GHLkTWAWpZCtSdKKRaKh3eYWNUW+chDx2+n+1d3/In1ueerua5XE+pQtPd
Jjcgfu69IwMKgQakeaImddfzeKGzhKTH1HdLazyHPD1TUe9uA1yGSIRbmUKE9bXv
T1FJg7sWDEvu16GNl+VT9ud1AUHMz9RKIUYIK5sCgYEAhZwv6+noWcAMSkjN7Vv5
WFn4POF5aB1dBoyAobu27UqPQmG9yMUo4PaxYoidyTOLsZ8BaVLG/0He4KLHMrQQ
ShckeNF2z8Mwtc2mQ92A5rRTy2TmoZkm50u6zd5nNJFP+Dq9WcXD8ktU74w90QvC
JT2OgnS0wW6bXT4CQfzg7z8CgYEAv3xWn5Icqv7WJXTeRBRQwcYN2NyGp2RizRJZ
2Hn3C8o2AlJKtAB6m6ntOqXwaxCRTAPl96yAjN84K7bY3ds0EXVuxiPHdV3QtfFM
LR3H4rcxVib09G6eMaokcPQ07G30st4CliLiTxAaAfuTC1LjCZCcMRcT2UTBANv6
It/99lcCgYB2QdePp8WW0V2hbPhprRyuF236mFb2Lz7rwNy7yFTI8iB8HsfGO0GI
7KOdh3YPOnCVX3L6wuseDOtqfJmm5tLkzITEZf2NSmhaeP47ve5JqQYvwSn9+A3Z
78NWh5g0lLhnYnZTlM7L8M7dNFPxVXVpE9XEh2oXLp5x4UjRHY7+DQ==
-----END RSA PRIVATE KEY-----";
const MODULUS: &str = "ysGdSoZHeG80Wp_R7rH6VXS1rq87HfYDssTK_efY_0iHCCjwI2EwJE8uux3UufUZkt74ejam-J0-o-xsQE3xgrc-pa49IXb30ttpGl76FEBgpXY8KvjjJwCDL5uhxSMiU-_SxVZqIvV3suPvmcGlKKt-jU1dgYAnftpGNpAxtHSpuZ1IRq6pO1LsX-K7obtg9QassfkOR5ugRjIvQg2RaMd29kpgAVC3sTTUFX-KbWtq6pdy2C_2GEXLUN1tkuDaFIlpckJlp5sFby3ePThzYX7-3d6nHCooeBxtuDJTgjM88jm-LOE4LcV3SBoLBvJKQZTpdn8veD4BEdrghXUtwQ";

fn jwks() -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(json!({"keys": [{"kty": "RSA", "kid": "test", "alg": "RS256", "use": "sig", "n": MODULUS, "e": "AQAB"}]})).unwrap()
}

fn token(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn oidc_tokens_verify_against_the_issuers_keys_and_bad_ones_say_why() {
    let v = OidcVerifier::from_jwks(ISSUER, vec!["collab".into()], &jwks()).unwrap();
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = token(json!({"sub": "alice", "iss": ISSUER, "aud": "collab", "exp": exp}));
    let verified = v.verify(&good).await.unwrap();
    assert_eq!(verified.user.0, "alice");
    assert_eq!(verified.expires_at, exp);
    let cases = [
        (
            token(
                json!({"sub": "alice", "iss": "https://evil.example.com", "aud": "collab", "exp": exp}),
            ),
            "issuer",
        ),
        (
            token(json!({"sub": "alice", "iss": ISSUER, "aud": "other", "exp": exp})),
            "audience",
        ),
        (
            token(json!({"sub": "alice", "iss": ISSUER, "aud": "collab", "exp": 1})),
            "expired",
        ),
        (
            collab::auth::issue_local_token(MODULUS.as_bytes(), "alice", 600),
            "algorithm",
        ),
        ("x.y.z".to_owned(), "malformed"),
    ];
    for (t, why) in cases {
        let err = v.verify(&t).await.unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(err.to_string().contains(why), "{err} should mention {why}");
    }
    let mut forged = good.clone();
    forged.push('A');
    assert!(v.verify(&forged).await.is_err());
}

// The P-256 key of the collab crate's unit tests, as a second (rotated-to) key.
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsQIWR/k3+/2j3pvN
CkGQ8OToxxjCwCnzt5zpgZ8KcU2hRANCAAQGi5aplvYyTO+cLA/Tobr9YgbIG8l8
Efu+teoltEuoFPWf9KqBTj77LrvzVCO3jweVRxbCKo/GZRi8CnOnhbFI
-----END PRIVATE KEY-----";
const EC_X: &str = "BouWqZb2MkzvnCwP06G6_WIGyBvJfBH7vrXqJbRLqBQ";
const EC_Y: &str = "9Z_0qoFOPvsuu_NUI7ePB5VHFsIqj8ZlGLwKc6eFsUg";

fn rsa_key() -> serde_json::Value {
    json!({"kty": "RSA", "kid": "test", "alg": "RS256", "use": "sig", "n": MODULUS, "e": "AQAB"})
}

fn ec_key() -> serde_json::Value {
    json!({"kty": "EC", "kid": "rotated", "alg": "ES256", "use": "sig", "crv": "P-256", "x": EC_X, "y": EC_Y})
}

fn ec_token(issuer: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let exp = chrono::Utc::now().timestamp() + 600;
    jsonwebtoken::encode(
        &header,
        &json!({"sub": "bob", "iss": issuer, "aud": "collab", "exp": exp}),
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn rsa_token(issuer: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 600;
    token(json!({"sub": "alice", "iss": issuer, "aud": "collab", "exp": exp}))
}

/// A local issuer: `/.well-known/jwks.json` answers the current key set (the OpenID
/// configuration is 404, as for Cognito's layout); counts the key-set requests.
async fn issuer(keys: Arc<Mutex<Vec<serde_json::Value>>>, hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (keys, hits) = (keys.clone(), hits.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let (status, body) = if head.starts_with("GET /.well-known/jwks.json ") {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let keys = keys.lock().unwrap().clone();
                    ("200 OK", json!({ "keys": keys }).to_string())
                } else {
                    ("404 Not Found", "{}".to_owned())
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn keys_are_fetched_at_the_first_token_and_again_on_rotation_at_most_once_per_interval() {
    let keys = Arc::new(Mutex::new(vec![rsa_key()]));
    let hits = Arc::new(AtomicUsize::new(0));
    let iss = issuer(keys.clone(), hits.clone()).await;
    let v = OidcVerifier::new(&iss, vec!["collab".into()]).unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing is fetched at start"
    );

    assert_eq!(v.verify(&rsa_token(&iss)).await.unwrap().user.0, "alice");
    assert_eq!(v.verify(&rsa_token(&iss)).await.unwrap().user.0, "alice");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch for both tokens");

    // The issuer rotates to a new key: a token signed with it refetches once... but only
    // after the interval since the last fetch; until then it is refused as an unknown key.
    keys.lock().unwrap().push(ec_key());
    let err = v.verify(&ec_token(&iss, "rotated")).await.unwrap_err();
    assert_eq!(err.status(), 401);
    assert!(err.to_string().contains("key is unknown"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "rate-limited");

    // A verifier whose last fetch is older than the interval (a fresh one, here) picks the
    // new key up, and a flood of unknown kids costs one fetch, not one per token.
    let v = OidcVerifier::new(&iss, vec!["collab".into()]).unwrap();
    assert_eq!(
        v.verify(&ec_token(&iss, "rotated")).await.unwrap().user.0,
        "bob"
    );
    let before = hits.load(Ordering::SeqCst);
    for i in 0..20 {
        let err = v
            .verify(&ec_token(&iss, &format!("bogus-{i}")))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 401, "{err}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "unknown kids within the interval fetch nothing"
    );
    assert!(
        v.verify(&rsa_token(&iss)).await.is_ok(),
        "the old key still verifies"
    );
}

#[tokio::test]
async fn an_unreachable_or_stalled_issuer_fails_fast_as_unavailable_and_does_not_stop_the_start() {
    // Nothing listens on the first; the second accepts and never answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let stalled = collab::testing::stalled_server().await;
    for addr in [closed, stalled] {
        let iss = format!("http://{addr}");
        let v = OidcVerifier::new(&iss, vec!["collab".into()]).expect("starts without the issuer");
        // A guard against hanging, far above the fetch timeout (2 s).
        let err = tokio::time::timeout(Duration::from_secs(10), v.verify(&rsa_token(&iss)))
            .await
            .expect("the fetch is bounded")
            .unwrap_err();
        assert_eq!(err.status(), 503, "{err}");
        // Within the retry interval, tokens are refused without another attempt.
        let err = v.verify(&rsa_token(&iss)).await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("retry shortly"), "{err}");
    }
}

#[test]
fn an_empty_audience_refuses_to_build_a_verifier() {
    assert!(OidcVerifier::new("https://issuer.example.com", vec![]).is_err());
    assert!(OidcVerifier::new("https://issuer.example.com", vec![" ".into()]).is_err());
}
