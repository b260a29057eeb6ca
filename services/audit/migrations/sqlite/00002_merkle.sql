-- +goose Up
-- The RFC 6962 Merkle tree over the archive: the hashes tlog.StoredHashes
-- returns for each leaf, at their tlog stored-hash index. Leaf i is the
-- archived event of sequence i+1 (leaf encoding: audit.LeafBytes). Written in
-- the archive's own transaction, never updated.
CREATE TABLE audit_tree (
    idx  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
-- Signed checkpoints (C2SP tlog-checkpoint signed as a note), one per tree
-- size, kept for good.
CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    at   INTEGER NOT NULL
);

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_tree;
