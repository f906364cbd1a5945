//! The shared driver's PostgreSQL schema, versioned: each migration is applied once, in order,
//! when an instance starts ([`super::pg::Db::connect`]). A migration is never edited once
//! released; a change is a new migration.

use super::pg::Migration;

/// Every migration this binary knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "the log: identity, sequencing, indexes, integration, checkpoints, submitters",
        sql: r#"
-- The log this database belongs to: an instance with another origin or key refuses it.
CREATE TABLE log_identity (
    id smallint PRIMARY KEY CHECK (id = 1),
    origin text NOT NULL,
    vkey text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Sequencing: the next leaf index. Every sequencing transaction locks this row first, so
-- batches from all instances get contiguous indices, one transaction after another.
CREATE TABLE seq_coord (
    id smallint PRIMARY KEY CHECK (id = 1),
    next_index bigint NOT NULL CHECK (next_index >= 0)
);
-- Sequenced entries (the log's leaves), by index; the leaf hash is the exact-dedup index.
CREATE TABLE entries (
    idx bigint PRIMARY KEY CHECK (idx >= 0),
    leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32),
    data bytea NOT NULL CHECK (length(data) <= 65535),
    sequenced_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX entries_leaf_hash ON entries (leaf_hash);
-- Assertion replay keys of logged decisions.
CREATE TABLE assertions (
    key bytea PRIMARY KEY CHECK (length(key) = 32),
    idx bigint NOT NULL
);
-- Enrolled credentials: enrolment index and last signature counter.
CREATE TABLE credentials (
    id bytea PRIMARY KEY,
    enrolment bigint NOT NULL,
    sign_count bigint NOT NULL CHECK (sign_count >= 0 AND sign_count <= 4294967295)
);
-- The first revocation of each revoked enrolment.
CREATE TABLE revocations (
    enrolment bigint PRIMARY KEY,
    idx bigint NOT NULL
);
-- Integration: the tree the bucket's checkpoint covers, its right edge in tile form, and the
-- checkpoint signed for it. Only the integrator holding the lease advances it, and only from
-- the size it read (a fence against a stale integrator).
CREATE TABLE int_coord (
    id smallint PRIMARY KEY CHECK (id = 1),
    size bigint NOT NULL CHECK (size >= 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    edge bytea NOT NULL,
    checkpoint text NOT NULL,
    signed_at_ms bigint NOT NULL
);
-- Every checkpoint this database signed: the bucket's checkpoint must be one of them.
CREATE TABLE checkpoints (
    size bigint PRIMARY KEY CHECK (size >= 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    note text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);
-- Submitter token hashes (SHA-256) and names; a name may have several tokens.
CREATE TABLE submitters (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    name text NOT NULL
);
CREATE INDEX submitters_name ON submitters (name);
"#,
    },
    Migration {
        version: 2,
        name: "integration halts: why the integrator stopped, seen by every instance",
        sql: r#"
-- Set by an integrator that stopped for good (an altered object, another deployment's bucket),
-- read by every instance for /healthz; cleared by the next integrator whose checks pass.
CREATE TABLE integration_halt (
    id smallint PRIMARY KEY CHECK (id = 1),
    reason text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"#,
    },
    Migration {
        version: 3,
        name: "key-value area: the approval front end's records",
        sql: super::kv::SCHEMA,
    },
    Migration {
        version: 4,
        name: "witness records: what each witness last cosigned, shared by every instance",
        sql: r#"
-- One row per witness (by its verifier key, so renaming it in the policy keeps its record):
-- the latest checkpoint it cosigned for this log and its cosignature lines (JSON, the embedded
-- store's record format). Written by the integrator, which alone talks to the witnesses; read
-- by every instance to serve the cosigned checkpoint and, in quorum mode, to release waiters.
CREATE TABLE witness_records (
    vkey text PRIMARY KEY,
    record text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"#,
    },
    Migration {
        version: 5,
        name: "the audit feed numbered by one function call, not a transaction of round trips",
        sql: super::kv::NUMBER_QUEUED,
    },
];
