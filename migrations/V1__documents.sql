-- Schema of the collaborative-editing backend. The seed defined `documents`, `operations` (one row
-- per op: ssn, sum, sid, seq, value, tombstone, timestamp) and `document_snapshots` (ssn, sum, sid,
-- seq, value, tombstone). Those names stay; every departure is commented where it is made.
--
-- Applied by refinery (embedded in the `collab` crate) when a function container starts and by
-- `make dev` / the tests; each file runs once, recorded in `refinery_schema_history`.

CREATE TABLE documents (
    id uuid PRIMARY KEY,
    title text NOT NULL,
    owner_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Departure: deletion is replicated through SNS and operations may still arrive afterwards,
    -- so a deleted document keeps a tombstone row; late operations are dropped, never recreate it.
    deleted_at timestamptz,
    -- Departure: the replica that created the document, and a last-writer-wins stamp for the
    -- title (milliseconds, then replica id) so that concurrent renames on two replicas converge.
    origin_replica integer NOT NULL,
    title_stamp bigint NOT NULL DEFAULT 0,
    title_replica integer NOT NULL DEFAULT 0,
    -- Departure: how many rows this replica has appended to `operations` for the document; the
    -- next row's `log_pos`. It is bumped while the row is locked, so log positions follow commit
    -- order and a reader of the tail ("ops after position p") never skips a row that commits later.
    log_len bigint NOT NULL DEFAULT 0
);

CREATE INDEX documents_by_owner ON documents (owner_id, created_at DESC) WHERE deleted_at IS NULL;

CREATE TABLE operations (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ssn integer NOT NULL,
    sum bigint NOT NULL,
    sid bigint NOT NULL,
    seq bigint NOT NULL,
    -- insert: the text of the run; update: the new character; delete: NULL.
    value text,
    -- Departure: the op kind (the seed could only express inserts).
    kind text NOT NULL CHECK (kind IN ('insert', 'delete', 'update')),
    -- Kept from the seed, now derived: whether the row is a delete (its targets become tombstones).
    tombstone boolean GENERATED ALWAYS AS (kind = 'delete') STORED,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    -- Departure: run length. An insert of n chars is one row with ids (sum + k, seq + k), k < n.
    len integer NOT NULL CHECK (len >= 1),
    -- Departure: the reference S4Vector of an insert (all NULL: at the head) or the target of an
    -- update (ref_sid, ref_seq only).
    ref_ssn integer,
    ref_sum bigint,
    ref_sid bigint,
    ref_seq bigint,
    -- Departure: the target id ranges of a delete, [{"sid":..,"seq":..,"len":..}, ...].
    targets jsonb,
    -- Departure: position in this replica's log of the document (application order, which
    -- respects causality): the tail after a snapshot and catch-up pages are ranges of it.
    log_pos bigint NOT NULL,
    -- Departure: the replica that accepted the op from a client.
    origin_replica integer NOT NULL,
    -- Departure: the op identity is (document, sid, seq), so at-least-once delivery is harmless:
    -- a redelivered op finds its row. Overlapping runs are refused by the append statement,
    -- which runs under the document's row lock.
    PRIMARY KEY (document_id, sid, seq),
    UNIQUE (document_id, log_pos)
);

CREATE TABLE document_snapshots (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    -- Departure: snapshots are numbered (1, 2, ...) and kept as history.
    version integer NOT NULL,
    -- Departure: the seed stored one row per element (ssn, sum, sid, seq, value, tombstone), which
    -- needs a document-order column and a sort plus a rebuild on every load. A snapshot here is
    -- the encoded replica (`rga::Rga::encode`: ids, tombstones, document order, the op log), which
    -- loads in one row; `bench -- store` measures the cold load. `text` is kept for history reads.
    state bytea NOT NULL,
    text text NOT NULL,
    version_vector jsonb NOT NULL,
    -- Operations with log_pos < this are folded into the snapshot; the tail starts here.
    log_pos bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, version)
);

-- Editing sessions. A session is an RGA site: its id is the site id, REPLICA_ID in bits 40..52
-- and a per-replica counter below, unique across replicas without coordination and below 2^53 so
-- that JavaScript clients read it exactly.
CREATE SEQUENCE session_counter MINVALUE 1 MAXVALUE 1099511627775;

CREATE TABLE sessions (
    site_id bigint PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    replica integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sessions_by_document ON sessions (document_id);

-- Operations whose causes have not arrived (their site's previous op, their reference, a delete
-- target). They survive restarts here and are applied when the causes come.
CREATE TABLE waiting_ops (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    sid bigint NOT NULL,
    seq bigint NOT NULL,
    op jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, sid, seq)
);

-- Transactional outbox: the message to broadcast is written in the same transaction as the ops,
-- published to SNS after commit and deleted once SNS accepted it. A sweep republishes rows left
-- behind by a failed publish or a crash.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    document_id uuid NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    -- A sweep leases the rows it is publishing, so that two sweeps do not send them twice.
    claimed_until timestamptz
);
