-- Initial schema for the PostgreSQL backend.
--
-- Times are timestamptz (stored as UTC). Absent thread and user parts of a key
-- are stored as '' so that the unique indexes treat them as equal, the same as
-- in the SQLite schema.

CREATE TABLE users (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform         TEXT        NOT NULL,
    tenant           TEXT        NOT NULL,
    platform_user_id TEXT        NOT NULL,
    display_name     TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_platform_key ON users (platform, tenant, platform_user_id);

CREATE TABLE conversations (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform            TEXT        NOT NULL,
    tenant              TEXT        NOT NULL,
    chat                TEXT        NOT NULL,
    thread              TEXT        NOT NULL DEFAULT '',
    direct_user         TEXT        NOT NULL DEFAULT '',
    lang                TEXT,
    reset_at            TIMESTAMPTZ,
    reset_after_message BIGINT      NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX conversations_key
    ON conversations (platform, tenant, chat, thread, direct_user);

CREATE TABLE messages (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id    BIGINT      NOT NULL REFERENCES conversations (id),
    user_id            BIGINT      NOT NULL REFERENCES users (id),
    user_text          TEXT        NOT NULL,
    reply_kind         TEXT        NOT NULL,
    reply_lang         TEXT        NOT NULL,
    card               JSONB,
    reply_text         TEXT        NOT NULL,
    retrieved_ids      JSONB       NOT NULL DEFAULT '[]',
    provider           TEXT,
    model              TEXT,
    prompt_tokens      BIGINT,
    completion_tokens  BIGINT,
    first_token_ms     BIGINT,
    total_ms           BIGINT      NOT NULL,
    complete           BOOLEAN     NOT NULL,
    inbound_message_id TEXT,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE processed_events (
    event_key  TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX processed_events_created ON processed_events (created_at);

CREATE TABLE deliveries (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    answer_id           BIGINT      NOT NULL REFERENCES messages (id),
    platform            TEXT        NOT NULL,
    tenant              TEXT        NOT NULL,
    chat                TEXT        NOT NULL,
    platform_message_id TEXT        NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX deliveries_platform_message
    ON deliveries (platform, tenant, chat, platform_message_id);
CREATE INDEX deliveries_message_id ON deliveries (platform, tenant, platform_message_id);

CREATE TABLE feedback (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL for a written `/feedback` comment that rates no particular answer.
    answer_id        BIGINT      REFERENCES messages (id),
    platform         TEXT        NOT NULL,
    tenant           TEXT        NOT NULL,
    chat             TEXT        NOT NULL,
    platform_user_id TEXT        NOT NULL,
    rating           TEXT,
    comment          TEXT,
    event_id         TEXT        NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX feedback_event ON feedback (platform, tenant, event_id);
CREATE INDEX feedback_answer ON feedback (answer_id);

CREATE TABLE subscriptions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform    TEXT        NOT NULL,
    tenant      TEXT        NOT NULL,
    chat        TEXT        NOT NULL,
    thread      TEXT        NOT NULL DEFAULT '',
    direct_user TEXT        NOT NULL DEFAULT '',
    local_time  TEXT        NOT NULL,
    time_zone   TEXT        NOT NULL,
    lang        TEXT        NOT NULL,
    active      BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX subscriptions_key
    ON subscriptions (platform, tenant, chat, thread, direct_user);

CREATE TABLE tip_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id BIGINT      NOT NULL REFERENCES subscriptions (id),
    local_date      DATE        NOT NULL,
    tip_id          TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX tip_deliveries_once_a_day ON tip_deliveries (subscription_id, local_date);
