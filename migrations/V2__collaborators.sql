-- Per-document roles (issue 7). The owner is documents.owner_id; others get `viewer` (read) or
-- `editor` (read and write). Changes replicate through SNS, so each row carries a
-- last-writer-wins stamp (milliseconds, then replica id); a removal keeps the row with role NULL
-- so that an older grant arriving late cannot resurrect it.
CREATE TABLE collaborators (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    role text CHECK (role IN ('viewer', 'editor')),
    stamp bigint NOT NULL,
    stamp_replica integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, user_id)
);

CREATE INDEX collaborators_by_user ON collaborators (user_id) WHERE role IS NOT NULL;
