//! Publishing through the real `aws-sdk-sns` client to a moto server (`AWS_ENDPOINT_URL`, or
//! one started here from `.venv/bin/moto_server`), read back from an SQS queue subscribed to
//! the topic: body, attributes, splitting of a large batch, and the filter policy that keeps a
//! replica's own messages away from it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use collab::adapters::SnsPublisher;
use collab::testing::TestDb;
use collab::wire::{Broadcast, Envelope, SNS_MAX_BYTES};
use collab::{Limits, ReplicaId, Service, Settings, UserId};
use rga::{Rga, VersionVector};
use serde_json::Value;

/// A moto server for this test, unless `AWS_ENDPOINT_URL` names one.
struct Moto {
    endpoint: String,
    child: Option<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn moto() -> Moto {
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        return Moto {
            endpoint,
            child: None,
        };
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let venv = format!("{}/../../.venv/bin/moto_server", env!("CARGO_MANIFEST_DIR"));
    let bin = if std::path::Path::new(&venv).exists() {
        venv
    } else {
        "moto_server".to_owned()
    };
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs moto: run `make test`, or set AWS_ENDPOINT_URL, or install moto[server] ({bin}: {e})"));
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Moto {
                endpoint,
                child: Some(child),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("moto did not start on {endpoint}");
}

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    // SAFETY-free: the variables only feed the SDK's default credential chain in this process.
    let creds = aws_sdk_sns::config::Credentials::new("test", "test", None, None, "tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(collab::config::https_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await
}

/// A topic with a queue subscribed (optionally with a filter policy); returns (topic, queue url).
async fn topic_with_queue(
    conf: &aws_config::SdkConfig,
    name: &str,
    filter: Option<&str>,
) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(conf);
    let sqs = aws_sdk_sqs::Client::new(conf);
    let topic = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("{name}-q"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let mut sub = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn);
    if let Some(f) = filter {
        sub = sub.attributes("FilterPolicy", f);
    }
    sub.send().await.unwrap();
    (topic, queue)
}

/// Every notification waiting in the queue: (message body, attributes).
async fn drain(conf: &aws_config::SdkConfig, queue: &str) -> Vec<(String, Value)> {
    let sqs = aws_sdk_sqs::Client::new(conf);
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let msgs = got.messages.unwrap_or_default();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            let n: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            out.push((
                n["Message"].as_str().unwrap().to_owned(),
                n["MessageAttributes"].clone(),
            ));
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn broadcasts_reach_the_topic_with_their_attributes_and_large_batches_are_split() {
    let moto = moto();
    let conf = sdk(&moto.endpoint).await;
    let (topic, queue) = topic_with_queue(&conf, "collab-split", None).await;
    let db = TestDb::new().await.unwrap();
    let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&conf), topic);
    let settings = Settings {
        replica: ReplicaId(3),
        ssn: 1,
        limits: Limits::default(),
        compact_after: 1000,
        cache_docs: 4,
    };
    let svc = Service::new(db.store(1).unwrap(), publisher, settings);
    // 600k chars of initial content: one op, far over SNS's 256 KiB.
    let content: String = "let x = \"naïve → 😀\";\n".repeat(30_000);
    let doc = svc
        .create_document(&UserId("alice".into()), "big.rs", Some(&content))
        .await
        .unwrap()
        .document;
    let got = drain(&conf, &queue).await;
    assert!(got.len() >= 3, "split into {} messages", got.len());
    let mut replica = Rga::new();
    for (body, attrs) in &got {
        assert!(body.len() + 100 < SNS_MAX_BYTES, "{} bytes", body.len());
        assert_eq!(attrs["document_id"]["Value"], doc.id.to_string());
        assert_eq!(attrs["replica_id"]["Value"], "3");
        assert_eq!(attrs["replica_id"]["Type"], "String");
        let e: Envelope = serde_json::from_str(body).unwrap();
        assert_eq!(e.origin, ReplicaId(3));
        let Broadcast::Ops { document, ops } = e.body else {
            panic!("not an ops message")
        };
        assert_eq!(document.title, "big.rs");
        replica.apply_all(ops).unwrap();
    }
    assert_eq!(replica.text(), content);
    assert_eq!(
        replica.ops_since(&VersionVector::new()).len(),
        1,
        "the pieces rejoin one run"
    );
}

#[tokio::test]
async fn the_filter_policy_keeps_a_replicas_own_messages_away() {
    let moto = moto();
    let conf = sdk(&moto.endpoint).await;
    let (topic, queue) = topic_with_queue(
        &conf,
        "collab-filter",
        Some(r#"{"replica_id": [{"anything-but": ["1"]}]}"#),
    )
    .await;
    let db = TestDb::new().await.unwrap();
    for replica in [1u16, 2] {
        let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&conf), topic.clone());
        let settings = Settings {
            replica: ReplicaId(replica),
            ssn: 1,
            limits: Limits::default(),
            compact_after: 1000,
            cache_docs: 4,
        };
        let svc = Service::new(db.store(1).unwrap(), publisher, settings);
        svc.create_document(
            &UserId("alice".into()),
            &format!("from {replica}"),
            Some("x"),
        )
        .await
        .unwrap();
    }
    let got = drain(&conf, &queue).await;
    assert_eq!(
        got.len(),
        1,
        "only replica 2's message reaches replica 1's queue"
    );
    assert_eq!(got[0].1["replica_id"]["Value"], "2");
}

#[tokio::test]
async fn publish_batch_sends_every_message_with_its_attributes_in_calls_of_ten() {
    use collab::EventPublisher;
    use collab::wire::Outbound;
    let moto = moto();
    let conf = sdk(&moto.endpoint).await;
    let (topic, queue) = topic_with_queue(&conf, "collab-batch", None).await;
    let publisher = SnsPublisher::new(aws_sdk_sns::Client::new(&conf), topic);
    let messages: Vec<Outbound> = (0..23)
        .map(|i| Outbound {
            document_id: collab::DocumentId(uuid::Uuid::from_u128(i + 1)),
            origin: ReplicaId(2),
            body: format!("{{\"n\": {i}}}"),
        })
        .collect();
    let results = publisher.publish_batch(&messages).await;
    assert_eq!(results.len(), 23);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut got = drain(&conf, &queue).await;
    got.sort_by_key(|(body, _)| serde_json::from_str::<Value>(body).unwrap()["n"].as_u64());
    assert_eq!(got.len(), 23);
    for (i, (body, attrs)) in got.iter().enumerate() {
        assert_eq!(body, &format!("{{\"n\": {i}}}"));
        assert_eq!(attrs["replica_id"]["Value"], "2");
        assert_eq!(
            attrs["document_id"]["Value"],
            uuid::Uuid::from_u128(i as u128 + 1).to_string()
        );
    }
}
