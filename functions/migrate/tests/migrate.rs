//! The migrate step on a fresh, empty PostgreSQL database, driven by the CloudFormation
//! custom-resource fixtures of `events/cfn` (their ResponseURL pointed at a local server that
//! records the answers), and the functions' login it makes: it reads and writes, it cannot
//! change the schema.

use std::sync::{Arc, Mutex};

use collab::PgDocumentStore;
use collab::testing::TestDb;
use migrate::{Migrator, Report};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn event(name: &str, response_url: &str) -> Value {
    let path = format!("{}/../../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    e["ResponseURL"] = Value::from(response_url);
    e
}

/// A local stand-in for the pre-signed S3 URL: records each PUT body and answers 200.
async fn response_url() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text[..i]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        let body = &buf[i + 4..i + 4 + len];
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_slice(body).unwrap_or(Value::Null));
                        break;
                    }
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (
        format!("http://{addr}/stack-response?X-Amz-Signature=x"),
        got,
    )
}

fn login_config(db: &TestDb, user: &str, password: &str) -> tokio_postgres::Config {
    let mut c = db.config().clone();
    c.user(user).password(password);
    c
}

#[tokio::test]
async fn the_custom_resource_migrates_makes_the_login_and_answers_cloudformation() {
    let db = TestDb::empty().await.unwrap();
    let store = db.store(1).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 0);
    assert!(
        store.check_schema().await.is_err(),
        "a function refuses to start"
    );
    let user = format!("collab_fn_{}", std::process::id());
    let m = Migrator::new(
        store.clone(),
        Some((user.clone(), "dev-only-password".into())),
    );
    let (url, answers) = response_url().await;

    let answer = m.handle(event("cfn/create", &url)).await.unwrap();
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let need = PgDocumentStore::needed_schema_version();
    assert_eq!(answer["Data"]["SchemaVersion"], need);
    assert_eq!(store.check_schema().await.unwrap(), need);
    let got = answers.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["RequestId"], "11111111-1111-4111-8111-111111111111");
    assert_eq!(got[0]["LogicalResourceId"], "Schema");
    assert_eq!(got[0]["PhysicalResourceId"], migrate::PHYSICAL_ID);

    // An update with the schema current applies nothing and succeeds; a delete changes
    // nothing.
    assert_eq!(
        m.run().await.unwrap(),
        Report {
            applied: vec![],
            schema_version: need,
            app_login: Some(user.clone()),
        }
    );
    assert_eq!(
        m.handle(event("cfn/update", &url)).await.unwrap()["Status"],
        "SUCCESS"
    );
    assert_eq!(
        m.handle(event("cfn/delete", &url)).await.unwrap()["Status"],
        "SUCCESS"
    );
    assert_eq!(store.schema_version().await.unwrap(), need);
    assert_eq!(answers.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_functions_login_reads_and_writes_and_cannot_change_the_schema() {
    let db = TestDb::empty().await.unwrap();
    let user = format!("collab_fn_{}_b", std::process::id());
    Migrator::new(db.store(1).unwrap(), Some((user.clone(), "pw".into())))
        .run()
        .await
        .unwrap();
    let (client, conn) = login_config(&db, &user, "pw")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let current: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, user);
    // Reads and writes.
    client
        .batch_execute(
            "INSERT INTO documents (id, title, owner_id, origin_replica) VALUES ('00000000-0000-4000-8000-0000000000aa', 't', 'alice', 1);
             UPDATE documents SET title = 'u' WHERE id = '00000000-0000-4000-8000-0000000000aa';
             SELECT count(*) FROM refinery_schema_history;
             DELETE FROM documents WHERE id = '00000000-0000-4000-8000-0000000000aa';",
        )
        .await
        .expect("the functions' login reads and writes");
    // Cannot change the schema, nor its history.
    for ddl in [
        "CREATE TABLE intruder (x int)",
        "DROP TABLE documents",
        "ALTER TABLE documents ADD COLUMN x int",
        "TRUNCATE operations",
        "DELETE FROM refinery_schema_history",
        "CREATE ROLE intruder",
    ] {
        let err = client.batch_execute(ddl).await.expect_err(ddl);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{ddl}: {err}"
        );
    }
    // The store the functions use works through that login.
    let store = PgDocumentStore::connect(&login_config(&db, &user, "pw"), 1).unwrap();
    assert_eq!(
        store.check_schema().await.unwrap(),
        PgDocumentStore::needed_schema_version()
    );
}

#[tokio::test]
async fn a_failed_migration_is_reported_to_cloudformation_as_failed() {
    let mut config = collab::testing::admin_config();
    config.dbname("collab_no_such_database");
    let m = Migrator::new(PgDocumentStore::connect(&config, 1).unwrap(), None);
    let (url, answers) = response_url().await;
    let answer = m.handle(event("cfn/create", &url)).await.unwrap();
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(answer["Reason"].as_str().unwrap().len() > 5);
    assert_eq!(answers.lock().unwrap()[0]["Status"], "FAILED");
}

#[tokio::test]
async fn the_administrator_cannot_be_made_the_functions_login() {
    let db = TestDb::empty().await.unwrap();
    let admin = collab::testing::admin_config()
        .get_user()
        .unwrap_or("postgres")
        .to_owned();
    let err = Migrator::new(db.store(1).unwrap(), Some((admin, "x".into())))
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
}

#[test]
fn the_templates_schema_resource_names_the_latest_migration() {
    // Changing the custom resource's Migrations property is what reruns the step on a deploy:
    // it must name the latest migration, or a new migration would never run in AWS.
    let path = format!("{}/../../template.yaml", env!("CARGO_MANIFEST_DIR"));
    let template = std::fs::read_to_string(path).unwrap();
    let named: Vec<i32> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Migrations: '"))
        .filter_map(|v| v.trim_end_matches('\'').parse().ok())
        .collect();
    assert_eq!(named, vec![PgDocumentStore::needed_schema_version()]);
}
