-- haul: unique keys of any size.
--
-- A btree entry holds at most 2704 bytes, so indexing the key text refused unique jobs
-- with long keys (a key of `kind:arguments` from a few kB of arguments). The index now
-- holds the key's SHA-256 digest, 32 bytes whatever the key's length; `unique_key`
-- keeps the key as given, for operators and for the exact comparison the lookup makes
-- after finding rows by digest.
--
-- The client computes the digest (SHA-256 of the key's UTF-8 bytes) and sends it with
-- the job; the backfill below computes the same value in SQL for the jobs stored
-- before this migration. The CHECK keeps a key and its digest together: a process of
-- an older haul version, which writes the key without a digest (and whose jobs the
-- lookup by digest would not see), fails to enqueue unique jobs instead of storing
-- duplicates.
ALTER TABLE jobs ADD COLUMN unique_digest bytea;
UPDATE jobs SET unique_digest = sha256(convert_to(unique_key, 'UTF8')) WHERE unique_key IS NOT NULL;
ALTER TABLE jobs ADD CONSTRAINT jobs_unique_digest_check CHECK (
    (unique_key IS NULL AND unique_digest IS NULL)
    OR (unique_key IS NOT NULL AND unique_digest IS NOT NULL AND octet_length(unique_digest) = 32)
);
CREATE INDEX jobs_unique_digest_idx ON jobs (unique_digest, created_at) WHERE unique_digest IS NOT NULL;
DROP INDEX jobs_unique_key_idx;
