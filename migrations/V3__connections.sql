-- WebSocket connections (issue 8): who is connected to which document on this replica, so that a
-- commit can push its new ops to them (API Gateway's PostToConnection). Connections are per
-- replica and never replicated; a connection API Gateway reports gone is deleted on the next push.
CREATE TABLE connections (
    connection_id text PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    replica integer NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX connections_by_document ON connections (document_id);
