//! OIDC token verification against a key set (a throwaway RSA key made for this test).

use collab::auth::OidcVerifier;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

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

#[test]
fn oidc_tokens_verify_against_the_issuers_keys_and_bad_ones_say_why() {
    let v = OidcVerifier::from_jwks(ISSUER, vec!["collab".into()], &jwks()).unwrap();
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = token(json!({"sub": "alice", "iss": ISSUER, "aud": "collab", "exp": exp}));
    assert_eq!(v.verify(&good).unwrap().0, "alice");
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
        let err = v.verify(&t).unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(err.to_string().contains(why), "{err} should mention {why}");
    }
    let mut forged = good.clone();
    forged.push('A');
    assert!(v.verify(&forged).is_err());
}
