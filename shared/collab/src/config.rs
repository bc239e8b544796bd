//! Configuration from the environment, with the seed's variable names. A missing or malformed
//! value fails at start with a message naming the variable.
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | PostgreSQL URL (or `DB_HOST`, `DB_PORT`, `DB_USER`, `DB_PSW`, `DB_NAME`) |
//! | `DB_SECRET_ARN` | Secrets Manager secret with `username` and `password` (read at start; replaces `DB_USER`/`DB_PSW`) |
//! | `DB_SSLMODE` | `require`: TLS, verified against the system's root certificates; else plain |
//! | `AWS_REGION` | region of the SNS topic |
//! | `SNS_TOPIC` | ARN of the topic shared by all replicas |
//! | `REPLICA_ID` | this replica, 0 ..= 8191 |
//! | `SSN_ID` | global session number of the RGA, ≥ 1 |
//! | `AWS_ENDPOINT_URL` | optional endpoint override (moto locally) |
//! | `MAX_BODY_BYTES`, `MAX_BATCH_OPS`, `MAX_DOCUMENT_CHARS` | request limits (413 above) |
//! | `COMPACT_AFTER` | tail rows that trigger a snapshot |
//! | `DB_POOL_SIZE` | connections per container |
//! | `DB_STATEMENT_TIMEOUT_MS` | server-side bound on each statement (default 5000; 0: the server's own) |
//! | `WS_MANAGEMENT_ENDPOINT` | WebSocket API stage endpoint for pushes (realtime: required) |

use std::str::FromStr;
use std::time::Duration;

use crate::ids::ReplicaId;

/// PostgreSQL connection settings (tokio-postgres', for callers that do not depend on it).
pub type PgConfig = tokio_postgres::Config;

/// A variable that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {problem}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Request and document limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most ops (or edits) in one request.
    pub max_batch_ops: usize,
    /// Longest document, in chars of visible text.
    pub max_document_chars: usize,
    /// Most ops of one session (a client's site) that may wait for their causes; a request
    /// that would leave more waiting is refused (413). A well-behaved client sends its ops in
    /// order and never has any waiting; the cap keeps a flooding one to a small corner.
    pub max_waiting_per_session: usize,
    /// How long (seconds) a client session's op may wait for its causes before the outbox
    /// sweep drops it (a well-behaved client's ops never wait).
    pub max_waiting_age_secs: i64,
    /// The CRDT's own limits, with the waiting buffer split by replica (see
    /// [`Limits::crdt_default`]).
    pub crdt: rga::Limits,
}

impl Limits {
    /// The CRDT's limits as this system uses them: site ids carry their replica in the high
    /// bits ([`crate::ids::SITE_COUNTER_BITS`]), and each replica's sites together may fill at
    /// most half of the waiting buffer, so one replica's clients cannot crowd out the ops that
    /// other replicas send (issue 16).
    pub fn crdt_default() -> rga::Limits {
        let mut l = rga::Limits::default();
        l.pending_group_shift = crate::ids::SITE_COUNTER_BITS;
        l.max_pending_per_group = l.max_pending / 2;
        l.max_pending_bytes_per_group = l.max_pending_bytes / 2;
        l
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_batch_ops: 1000,
            max_document_chars: 1 << 21,
            max_waiting_per_session: 1000,
            max_waiting_age_secs: 3600,
            crdt: Limits::crdt_default(),
        }
    }
}

/// The configuration of one function container.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL connection settings.
    pub database: tokio_postgres::Config,
    /// Region of the SNS topic.
    pub aws_region: String,
    /// ARN of the shared SNS topic.
    pub sns_topic: String,
    /// This replica.
    pub replica: ReplicaId,
    /// Global session number for RGA ops.
    pub ssn: u32,
    /// Endpoint override for AWS clients (moto).
    pub endpoint_url: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Tail rows after which a snapshot is written.
    pub compact_after: i64,
    /// Connections per container.
    pub pool_size: usize,
    /// `statement_timeout` the functions ask for when they connect (`DB_STATEMENT_TIMEOUT_MS`,
    /// default 5000; 0 leaves it to the server, as behind RDS Proxy, whose `InitQuery` sets it).
    pub statement_timeout_ms: u64,
    /// A Secrets Manager secret holding the database `username` and `password`.
    pub db_secret_arn: Option<String>,
    /// The WebSocket API's management endpoint (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`,
    /// or the local gateway's): new ops are pushed to editors through it when set.
    pub ws_management_endpoint: Option<String>,
}

fn parse<T: FromStr>(var: &'static str, value: &str, what: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError {
        var,
        problem: format!("{value:?} is not {what}"),
    })
}

/// The PostgreSQL connection settings alone, from `DATABASE_URL`, or `DB_HOST`, `DB_NAME`,
/// `DB_PORT`, `DB_USER`, `DB_PSW` (or `DB_SECRET_ARN` for the credentials), and `DB_SSLMODE`:
/// what every function reads, and all the migrate step needs.
pub fn database_from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<tokio_postgres::Config, ConfigError> {
    let required = |var: &'static str| {
        get(var).ok_or(ConfigError {
            var,
            problem: "is not set".into(),
        })
    };
    let mut database = match get("DATABASE_URL") {
        Some(url) => tokio_postgres::Config::from_str(&url).map_err(|e| ConfigError {
            var: "DATABASE_URL",
            problem: format!("is not a PostgreSQL URL ({e})"),
        })?,
        None => {
            let host = get("DB_HOST").ok_or(ConfigError {
                var: "DATABASE_URL",
                problem: "is not set (nor DB_HOST, DB_USER, DB_PSW, DB_NAME)".into(),
            })?;
            let mut c = tokio_postgres::Config::new();
            c.host(&host).dbname(&required("DB_NAME")?);
            match get("DB_USER") {
                Some(user) => {
                    c.user(user);
                }
                None if get("DB_SECRET_ARN").is_some() => {}
                None => {
                    return Err(ConfigError {
                        var: "DB_USER",
                        problem: "is not set (nor DB_SECRET_ARN)".into(),
                    });
                }
            }
            if let Some(p) = get("DB_PSW") {
                c.password(p);
            }
            if let Some(port) = get("DB_PORT") {
                c.port(parse("DB_PORT", &port, "a port number")?);
            }
            c
        }
    };
    if let Some(mode) = get("DB_SSLMODE") {
        database.ssl_mode(match mode.as_str() {
            "disable" => tokio_postgres::config::SslMode::Disable,
            "prefer" => tokio_postgres::config::SslMode::Prefer,
            "require" => tokio_postgres::config::SslMode::Require,
            other => {
                return Err(ConfigError {
                    var: "DB_SSLMODE",
                    problem: format!("{other:?} is not disable, prefer or require"),
                });
            }
        });
    }
    Ok(database)
}

/// The `username` and `password` of the Secrets Manager secret `arn` (named by `var` in
/// errors), read once at start.
pub async fn read_db_secret(
    region: &str,
    endpoint: Option<&str>,
    arn: &str,
    var: &'static str,
) -> Result<(String, String), ConfigError> {
    let fail = |problem: String| ConfigError { var, problem };
    let loader = aws_loader(region, endpoint);
    let client = aws_sdk_secretsmanager::Client::new(&loader.load().await);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "cannot be read: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
    let json: serde_json::Value = serde_json::from_str(out.secret_string().unwrap_or_default())
        .map_err(|_| fail("is not a JSON secret".into()))?;
    let field = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok((
        field("username").ok_or_else(|| fail("has no `username`".into()))?,
        field("password").ok_or_else(|| fail("has no `password`".into()))?,
    ))
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| {
            get(var).ok_or(ConfigError {
                var,
                problem: "is not set".into(),
            })
        };
        let database = database_from_lookup(&get)?;
        let replica: u16 = parse("REPLICA_ID", &required("REPLICA_ID")?, "an integer")?;
        if replica > ReplicaId::MAX {
            return Err(ConfigError {
                var: "REPLICA_ID",
                problem: format!("{replica} is above {}", ReplicaId::MAX),
            });
        }
        let ssn: u32 = parse("SSN_ID", &required("SSN_ID")?, "a positive integer")?;
        if ssn == 0 {
            return Err(ConfigError {
                var: "SSN_ID",
                problem: "must be at least 1".into(),
            });
        }
        let sns_topic = required("SNS_TOPIC")?;
        if !sns_topic.starts_with("arn:") {
            return Err(ConfigError {
                var: "SNS_TOPIC",
                problem: format!("{sns_topic:?} is not a topic ARN"),
            });
        }
        let mut limits = Limits::default();
        if let Some(v) = get("MAX_BODY_BYTES") {
            limits.max_body_bytes = parse("MAX_BODY_BYTES", &v, "a byte count")?;
        }
        if let Some(v) = get("MAX_BATCH_OPS") {
            limits.max_batch_ops = parse("MAX_BATCH_OPS", &v, "a count")?;
        }
        if let Some(v) = get("MAX_DOCUMENT_CHARS") {
            limits.max_document_chars = parse("MAX_DOCUMENT_CHARS", &v, "a count")?;
        }
        Ok(Config {
            database,
            aws_region: required("AWS_REGION")?,
            sns_topic,
            replica: ReplicaId(replica),
            ssn,
            endpoint_url: get("AWS_ENDPOINT_URL"),
            limits,
            compact_after: match get("COMPACT_AFTER") {
                Some(v) => parse("COMPACT_AFTER", &v, "a count")?,
                None => 2000,
            },
            pool_size: match get("DB_POOL_SIZE") {
                Some(v) => parse("DB_POOL_SIZE", &v, "a count")?,
                None => 4,
            },
            statement_timeout_ms: match get("DB_STATEMENT_TIMEOUT_MS") {
                Some(v) => parse("DB_STATEMENT_TIMEOUT_MS", &v, "milliseconds")?,
                None => 5000,
            },
            db_secret_arn: get("DB_SECRET_ARN"),
            ws_management_endpoint: get("WS_MANAGEMENT_ENDPOINT"),
        })
    }

    /// Reads the database credentials from `DB_SECRET_ARN`, if set (once, at start).
    pub async fn resolve_secret(&mut self) -> Result<(), ConfigError> {
        let Some(arn) = self.db_secret_arn.clone() else {
            return Ok(());
        };
        let (user, password) = read_db_secret(
            &self.aws_region,
            self.endpoint_url.as_deref(),
            &arn,
            "DB_SECRET_ARN",
        )
        .await?;
        self.database.user(user);
        self.database.password(password);
        Ok(())
    }
}

/// The AWS SDK configuration every client here starts from: `region`, `endpoint` when set
/// (moto locally), and bounded waits, so that a stalled SNS, API Gateway or Secrets Manager
/// makes a call fail within [`AWS_OPERATION_TIMEOUT`] instead of hanging the request (an edit
/// waits at most that for its publish; the outbox keeps the broadcast): half a second to
/// connect, 400 ms per attempt, two attempts. SNS and PostToConnection answer in tens of ms.
pub fn aws_loader(region: &str, endpoint: Option<&str>) -> aws_config::ConfigLoader {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .operation_attempt_timeout(Duration::from_millis(400))
        .operation_timeout(AWS_OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .region(aws_config::Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2));
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader
}

/// The HTTPS client of every AWS SDK client here: hyper on rustls with ring, the same TLS stack
/// as PostgreSQL's and the identity provider's connections (the SDK's default would add
/// aws-lc, about 1.5 MB more per bootstrap). It trusts the system's roots.
pub fn https_client() -> aws_sdk_sns::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The longest an AWS call waits, retries included (see [`aws_loader`]).
pub const AWS_OPERATION_TIMEOUT: Duration = Duration::from_millis(900);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("AWS_REGION", "us-east-1"),
        ("SNS_TOPIC", "arn:aws:sns:us-east-1:123456789012:collab"),
        ("REPLICA_ID", "1"),
        ("SSN_ID", "1"),
    ];

    #[test]
    fn a_complete_environment_parses() {
        let c = Config::from_lookup(env(GOOD)).unwrap();
        assert_eq!(c.replica, ReplicaId(1));
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn a_bad_or_missing_variable_is_named() {
        for (var, value) in [
            ("REPLICA_ID", "x"),
            ("REPLICA_ID", "9000"),
            ("SSN_ID", "0"),
            ("SNS_TOPIC", "collab"),
            ("DATABASE_URL", "nope://"),
        ] {
            let mut pairs: Vec<(&str, &str)> =
                GOOD.iter().filter(|(k, _)| *k != var).copied().collect();
            pairs.push((var, value));
            let err = Config::from_lookup(env(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
        let pairs: Vec<(&str, &str)> = GOOD
            .iter()
            .filter(|(k, _)| *k != "AWS_REGION")
            .copied()
            .collect();
        assert_eq!(
            Config::from_lookup(env(&pairs)).unwrap_err().var,
            "AWS_REGION"
        );
    }

    #[test]
    fn db_parts_are_an_alternative_to_database_url() {
        let mut pairs: Vec<(&str, &str)> = GOOD
            .iter()
            .filter(|(k, _)| *k != "DATABASE_URL")
            .copied()
            .collect();
        pairs.extend([
            ("DB_HOST", "db.internal"),
            ("DB_USER", "app"),
            ("DB_PSW", "s3cret"),
            ("DB_NAME", "collab"),
        ]);
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(c.database.get_dbname(), Some("collab"));
        pairs.retain(|(k, _)| *k != "DB_NAME");
        assert_eq!(Config::from_lookup(env(&pairs)).unwrap_err().var, "DB_NAME");
        pairs.push(("DB_NAME", "collab"));
        pairs.retain(|(k, _)| *k != "DB_USER");
        assert_eq!(Config::from_lookup(env(&pairs)).unwrap_err().var, "DB_USER");
        pairs.push((
            "DB_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        ));
        pairs.push(("DB_SSLMODE", "require"));
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(
            c.database.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        pairs.push(("DB_SSLMODE", "sometimes"));
        pairs.retain(|(k, v)| *k != "DB_SSLMODE" || *v == "sometimes");
        assert_eq!(
            Config::from_lookup(env(&pairs)).unwrap_err().var,
            "DB_SSLMODE"
        );
    }
}
