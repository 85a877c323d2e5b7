-- The original of every email taken as a message (issue 18: "the full original kept"), byte for
-- byte as received (SMTP, webhook or Gmail), outside the log: up to 10 MB each, and deleted with
-- its customer. Agents of the account download it (GET …/messages/:id/original).
CREATE TABLE email_originals (
    account_id       TEXT NOT NULL,
    email_message_id TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    customer_id      TEXT NOT NULL,
    raw              BLOB NOT NULL,
    received_at      TEXT NOT NULL,
    PRIMARY KEY (account_id, email_message_id)
);
CREATE INDEX email_originals_by_customer ON email_originals (customer_id);
