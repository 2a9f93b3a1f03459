-- Initial schema for the embedded SQLite backend.
--
-- Times are TEXT in the fixed UTC form 2024-05-01T08:30:00.000000Z, written by
-- the application, so that text order is time order. Absent thread and user
-- parts of a key are stored as '' so that the unique indexes treat them as
-- equal (SQLite treats NULLs in a unique index as distinct).

CREATE TABLE users (
    id               INTEGER PRIMARY KEY,
    platform         TEXT    NOT NULL,
    tenant           TEXT    NOT NULL,
    platform_user_id TEXT    NOT NULL,
    display_name     TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE UNIQUE INDEX users_platform_key ON users (platform, tenant, platform_user_id);

CREATE TABLE conversations (
    id                    INTEGER PRIMARY KEY,
    platform              TEXT    NOT NULL,
    tenant                TEXT    NOT NULL,
    chat                  TEXT    NOT NULL,
    thread                TEXT    NOT NULL DEFAULT '',
    direct_user           TEXT    NOT NULL DEFAULT '',
    lang                  TEXT,
    reset_at              TEXT,
    reset_after_message   INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT    NOT NULL
);
CREATE UNIQUE INDEX conversations_key
    ON conversations (platform, tenant, chat, thread, direct_user);

CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    conversation_id    INTEGER NOT NULL REFERENCES conversations (id),
    user_id            INTEGER NOT NULL REFERENCES users (id),
    user_text          TEXT    NOT NULL,
    reply_kind         TEXT    NOT NULL,
    reply_lang         TEXT    NOT NULL,
    card               TEXT,
    reply_text         TEXT    NOT NULL,
    retrieved_ids      TEXT    NOT NULL DEFAULT '[]',
    provider           TEXT,
    model              TEXT,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    first_token_ms     INTEGER,
    total_ms           INTEGER NOT NULL,
    complete           INTEGER NOT NULL,
    inbound_message_id TEXT,
    created_at         TEXT    NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE processed_events (
    event_key  TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE INDEX processed_events_created ON processed_events (created_at);

CREATE TABLE deliveries (
    id                  INTEGER PRIMARY KEY,
    answer_id           INTEGER NOT NULL REFERENCES messages (id),
    platform            TEXT    NOT NULL,
    tenant              TEXT    NOT NULL,
    chat                TEXT    NOT NULL,
    platform_message_id TEXT    NOT NULL,
    created_at          TEXT    NOT NULL
);
CREATE UNIQUE INDEX deliveries_platform_message
    ON deliveries (platform, tenant, chat, platform_message_id);
CREATE INDEX deliveries_message_id ON deliveries (platform, tenant, platform_message_id);

CREATE TABLE feedback (
    id               INTEGER PRIMARY KEY,
    -- NULL for a written `/feedback` comment that rates no particular answer.
    answer_id        INTEGER REFERENCES messages (id),
    platform         TEXT    NOT NULL,
    tenant           TEXT    NOT NULL,
    chat             TEXT    NOT NULL,
    platform_user_id TEXT    NOT NULL,
    rating           TEXT,
    comment          TEXT,
    event_id         TEXT    NOT NULL,
    received_at      TEXT    NOT NULL,
    created_at       TEXT    NOT NULL
);
CREATE UNIQUE INDEX feedback_event ON feedback (platform, tenant, event_id);
CREATE INDEX feedback_answer ON feedback (answer_id);

CREATE TABLE subscriptions (
    id          INTEGER PRIMARY KEY,
    platform    TEXT    NOT NULL,
    tenant      TEXT    NOT NULL,
    chat        TEXT    NOT NULL,
    thread      TEXT    NOT NULL DEFAULT '',
    direct_user TEXT    NOT NULL DEFAULT '',
    local_time  TEXT    NOT NULL,
    time_zone   TEXT    NOT NULL,
    lang        TEXT    NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE UNIQUE INDEX subscriptions_key
    ON subscriptions (platform, tenant, chat, thread, direct_user);

CREATE TABLE tip_deliveries (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    local_date      TEXT    NOT NULL,
    tip_id          TEXT,
    created_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX tip_deliveries_once_a_day ON tip_deliveries (subscription_id, local_date);
