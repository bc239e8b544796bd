//! A harness of several replicas of the whole system in one process: each replica has its own
//! PostgreSQL database (real migrations), its own api router and integrate handler (separate
//! containers: separate caches), and they talk only through a stand-in for SNS that carries
//! exactly the messages the publishers produce. The stand-in delivers them as real SNS events,
//! late, out of order, sometimes twice, sometimes in batches, and can make an integrate call fail
//! before it commits (the message is then redelivered, as Lambda retries would). The failure is
//! injected by the database itself: a trigger on the tables integrate writes raises
//! `admin_shutdown` (what every session gets when PostgreSQL restarts) while a fault budget in a
//! sequence is positive, so the real store, the real error mapping and the real transaction
//! rollback are what the test exercises.
//!
//! Requests go through the real router as API Gateway v2 events, so the whole path is exercised:
//! authorization, validation, the optimistic and locked write paths, the outbox, integration,
//! the waiting buffer.

use std::sync::Arc;

use api::{App, AuthConfig};
use collab::ports::Outbox;
use collab::testing::{ChannelPublisher, TestDb};
use collab::wire::Outbound;
use collab::{Limits, PgDocumentStore, ReplicaId, Service, Settings};
use integrate::Integrator;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// The topic every replica publishes to and accepts.
pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:collab-ops";

/// What the network did, for the closing report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// API requests made.
    pub requests: usize,
    /// Ops acknowledged with a 2xx.
    pub ops_acknowledged: usize,
    /// Messages the publishers produced.
    pub published: usize,
    /// Deliveries attempted (one message to one replica).
    pub deliveries: usize,
    /// Deliveries of a message that had been delivered already.
    pub duplicates: usize,
    /// Deliveries that overtook an older message to the same replica.
    pub reorders: usize,
    /// Integrate calls made to fail before commit (then retried).
    pub injected_failures: usize,
}

/// One replica: a database, the api, the integrate function, and what they published.
pub struct Replica {
    /// Its id (1-based).
    pub id: ReplicaId,
    /// Its database.
    pub db: TestDb,
    /// The api container.
    pub api: Arc<App<ChannelPublisher>>,
    /// The integrate container.
    pub integrate: Integrator<PgDocumentStore, ChannelPublisher>,
    published: ChannelPublisher,
}

struct Delivery {
    dest: usize,
    message: Outbound,
    seq: u64,
    delivered: bool,
}

/// The replicas and the network between them.
pub struct Cluster {
    /// The replicas.
    pub replicas: Vec<Replica>,
    queue: Vec<Delivery>,
    next_seq: u64,
    /// What happened so far.
    pub stats: Stats,
}

pub use api::testing::apigw_event;

/// An SNS event carrying `messages` as the subscription would deliver them.
pub fn sns_event(messages: &[&Outbound]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": format!("{TOPIC}:harness"),
                "Sns": {
                    "Type": "Notification",
                    "MessageId": format!("harness-{i}"),
                    "TopicArn": TOPIC,
                    "Subject": null,
                    "Message": m.body,
                    "Timestamp": "2026-11-26T12:00:00.000Z",
                    "SignatureVersion": "1",
                    "Signature": "harness",
                    "SigningCertUrl": "https://localhost/cert.pem",
                    "UnsubscribeUrl": "https://localhost/unsubscribe",
                    "MessageAttributes": {
                        "document_id": {"Type": "String", "Value": m.document_id.to_string()},
                        "replica_id": {"Type": "String", "Value": m.origin.to_string()}
                    }
                }
            })
        })
        .collect();
    json!({ "Records": records })
}

impl Cluster {
    /// `n` replicas, each on a fresh database.
    pub async fn new(n: usize) -> anyhow::Result<Cluster> {
        let mut replicas = Vec::with_capacity(n);
        for i in 1..=n {
            let id = ReplicaId(i as u16);
            let db = TestDb::new().await?;
            let published = ChannelPublisher::new();
            let settings = Settings {
                replica: id,
                ssn: 1,
                limits: Limits::default(),
                compact_after: 200,
                cache_docs: 8,
            };
            let api = App::new(
                Service::new(db.store(2)?, published.clone(), settings.clone()),
                AuthConfig::default(),
            );
            install_faults(&db).await?;
            let store = db.store(2)?;
            let integrate = Integrator {
                service: Service::new(store, published.clone(), settings),
                topic_arn: TOPIC.into(),
            };
            replicas.push(Replica {
                id,
                db,
                api,
                integrate,
                published,
            });
        }
        Ok(Cluster {
            replicas,
            queue: Vec::new(),
            next_seq: 0,
            stats: Stats::default(),
        })
    }

    /// Sends a request to replica `r`'s api as `user`; panics on a 5xx (valid input must never
    /// get one). Returns the status and the JSON body.
    pub async fn request(
        &mut self,
        r: usize,
        user: &str,
        method: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.stats.requests += 1;
        let event = apigw_event(method, path, query, body.as_ref(), user);
        let (status, json) = api::testing::send(&self.replicas[r].api, &event).await;
        assert!(
            status < 500,
            "{method} {path} on replica {} answered {status}: {json}",
            r + 1
        );
        self.collect();
        (status, json)
    }

    /// Moves what the replicas published into the network, addressed to every other replica
    /// (the subscriptions' filter policy keeps a replica's own messages away).
    pub fn collect(&mut self) {
        for (src, replica) in self.replicas.iter().enumerate() {
            for message in replica.published.take() {
                self.stats.published += 1;
                for dest in (0..self.replicas.len()).filter(|&d| d != src) {
                    self.queue.push(Delivery {
                        dest,
                        message: message.clone(),
                        seq: self.next_seq,
                        delivered: false,
                    });
                }
                self.next_seq += 1;
            }
        }
    }

    /// Messages still in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Removes and returns the distinct messages in flight (for tests that deliver them by hand).
    pub fn take_in_flight(&mut self) -> Vec<Outbound> {
        let mut seen = std::collections::HashSet::new();
        self.queue
            .drain(..)
            .filter(|d| seen.insert(d.seq))
            .map(|d| d.message)
            .collect()
    }

    /// Delivers one random message (and up to two more for the same replica, as an SNS batch);
    /// with `dup` probability it stays queued (to be delivered again), with `fail` probability
    /// the integrate call fails before commit. Returns false when nothing is in flight.
    pub async fn deliver_one(&mut self, rng: &mut ChaCha8Rng, dup: f64, fail: f64) -> bool {
        self.deliver_where(rng, dup, fail, |_| true).await
    }

    /// Like `deliver_one`, for messages to replica `dest` only.
    pub async fn deliver_to(
        &mut self,
        rng: &mut ChaCha8Rng,
        dest: usize,
        dup: f64,
        fail: f64,
    ) -> bool {
        self.deliver_where(rng, dup, fail, |d| d.dest == dest).await
    }

    async fn deliver_where(
        &mut self,
        rng: &mut ChaCha8Rng,
        dup: f64,
        fail: f64,
        pick: impl Fn(&Delivery) -> bool,
    ) -> bool {
        let candidates: Vec<usize> = (0..self.queue.len())
            .filter(|&i| pick(&self.queue[i]))
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let first = candidates[rng.random_range(0..candidates.len())];
        let dest = self.queue[first].dest;
        let mut batch = vec![first];
        for &i in &candidates {
            if batch.len() < 3 && i != first && self.queue[i].dest == dest && rng.random_bool(0.3) {
                batch.push(i);
            }
        }
        for &i in &batch {
            let d = &self.queue[i];
            if self.queue.iter().any(|o| o.dest == d.dest && o.seq < d.seq) {
                self.stats.reorders += 1;
            }
            if d.delivered {
                self.stats.duplicates += 1;
            }
        }
        self.stats.deliveries += batch.len();
        let failing = rng.random_bool(fail);
        let replica = &self.replicas[dest];
        if failing {
            // Fail one of the batch's writes: the ones before it commit, the rest do not.
            set_faults(&replica.db, 1).await;
        }
        let event = sns_event(
            &batch
                .iter()
                .map(|&i| &self.queue[i].message)
                .collect::<Vec<_>>(),
        );
        let result = replica.integrate.handle(event).await;
        let tripped = failing && set_faults(&replica.db, 0).await == 0;
        match result {
            Ok(_) => {
                assert!(!tripped || failing, "an armed failure was swallowed");
                // Delivered: drop from the queue, except those chosen to come again.
                batch.sort_unstable_by(|a, b| b.cmp(a));
                for i in batch {
                    if rng.random_bool(dup) {
                        self.queue[i].delivered = true;
                    } else {
                        self.queue.swap_remove(i);
                    }
                }
            }
            Err(e) => {
                assert!(e.is_transient(), "a delivery failed for good: {e}");
                self.stats.injected_failures += 1;
            }
        }
        self.collect();
        true
    }

    /// Delivers everything in flight (no faults), then runs every replica's outbox sweep,
    /// until nothing is left anywhere.
    pub async fn quiesce(&mut self, rng: &mut ChaCha8Rng) {
        loop {
            while self.deliver_one(rng, 0.0, 0.0).await {}
            let mut swept = 0;
            for r in &self.replicas {
                swept += r
                    .integrate
                    .service
                    .sweep_outbox(0)
                    .await
                    .expect("outbox sweep")
                    .published;
            }
            self.collect();
            if swept == 0 && self.queue.is_empty() {
                return;
            }
        }
    }

    /// Rows left in replica `r`'s outbox and waiting buffer.
    pub async fn leftovers(&self, r: usize) -> (i64, i64) {
        let store = self.replicas[r].db.store(1).expect("a store");
        let outbox = store.outbox_len().await.expect("outbox");
        let client = store.pool().get().await.expect("a connection");
        let waiting: i64 = client
            .query_one("SELECT count(*) FROM waiting_ops", &[])
            .await
            .expect("waiting")
            .get(0);
        (outbox, waiting)
    }

    /// Every stored op row of replica `r`: (sid, seq, len).
    pub async fn op_rows(&self, r: usize) -> Vec<(u64, u64, u64)> {
        let store = self.replicas[r].db.store(1).expect("a store");
        let client = store.pool().get().await.expect("a connection");
        client
            .query("SELECT sid, seq, len FROM operations", &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, i64>(1) as u64,
                    r.get::<_, i32>(2) as u64,
                )
            })
            .collect()
    }
}

/// The tables integrate writes: a write to any of them fails while the fault budget lasts.
const FAULTY_TABLES: [&str; 5] = [
    "documents",
    "operations",
    "waiting_ops",
    "sessions",
    "collaborators",
];

/// Installs the fault trigger in a replica's database (budget 0: no faults).
async fn install_faults(db: &TestDb) -> Result<(), collab::AppError> {
    let store = db.store(1)?;
    let client = store.pool().get().await?;
    let mut sql = String::from(
        "CREATE SEQUENCE harness_faults MINVALUE 0 START 0;
         CREATE FUNCTION harness_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE left_ bigint;
         BEGIN
           SELECT last_value INTO left_ FROM harness_faults;
           IF left_ > 0 THEN
             -- Sequences are not transactional: the budget stays spent after the rollback.
             PERFORM setval('harness_faults', left_ - 1);
             RAISE EXCEPTION 'injected failure before commit' USING ERRCODE = 'admin_shutdown';
           END IF;
           RETURN NULL;
         END $$;",
    );
    for t in FAULTY_TABLES {
        sql.push_str(&format!(
            "CREATE TRIGGER harness_fault BEFORE INSERT OR UPDATE OR DELETE ON {t}
             FOR EACH STATEMENT EXECUTE FUNCTION harness_fault();"
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(collab::AppError::from)
}

/// Sets the fault budget of `db` to `n` writes; returns what was left of the previous one.
async fn set_faults(db: &TestDb, n: i64) -> i64 {
    let store = db.store(1).expect("a pool on the harness database");
    let client = store
        .pool()
        .get()
        .await
        .expect("connecting to the harness database");
    let row = client
        .query_one(
            "SELECT last_value, setval('harness_faults', $1) FROM harness_faults",
            &[&n],
        )
        .await
        .expect("setting the fault budget");
    row.get(0)
}
