-- A failed outbox row backs off (claimed_until = now + 2^attempts s, at most 5 min) and, after
-- too many failures, is parked: kept and reported, no longer retried.
ALTER TABLE outbox ADD COLUMN parked_at timestamptz;

CREATE INDEX outbox_unsent ON outbox (created_at) WHERE parked_at IS NULL;

-- Idempotency keys: a request retried with the same key (the `Idempotency-Key` header, or a
-- WebSocket message's `request_id`) gets the first answer and applies nothing. The key is
-- written in the same transaction as the request's ops, so "applied" and "recorded" cannot
-- disagree; it expires after a day (the sweep deletes expired ones). Keys are per document and
-- user.
CREATE TABLE idempotency_keys (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    key text NOT NULL,
    -- A hash of the request (route and body): the same key with another body is refused.
    request_hash text NOT NULL,
    -- The first answer, as the use-case produced it (JSON).
    answer jsonb NOT NULL,
    expires_at timestamptz NOT NULL DEFAULT now() + interval '1 day',
    PRIMARY KEY (document_id, user_id, key)
);

CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
