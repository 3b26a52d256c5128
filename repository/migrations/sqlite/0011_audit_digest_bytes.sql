-- The log's digests (subject HMAC, response body SHA-256) as their 32 bytes instead of
-- 64 hex characters: they were 128 of an entry's ~330 bytes, and every byte of an
-- appended row is written twice (to the WAL, then by the checkpoint into the database).
-- The columns keep their declared type: SQLite stores a blob as a blob in any column.
-- The store writes lowercase hex as bytes and anything else as text, and reads bytes back
-- as lowercase hex, so every entry reads (and hashes into the Merkle tree) as it was
-- appended; this converts the rows written before by the same rule.
UPDATE audit_entries SET subject_hmac = unhex(subject_hmac)
 WHERE typeof(subject_hmac) = 'text' AND length(subject_hmac) > 0
   AND length(subject_hmac) % 2 = 0 AND subject_hmac NOT GLOB '*[^0-9a-f]*';
UPDATE audit_entries SET body_sha256 = unhex(body_sha256)
 WHERE typeof(body_sha256) = 'text' AND length(body_sha256) > 0
   AND length(body_sha256) % 2 = 0 AND body_sha256 NOT GLOB '*[^0-9a-f]*';
UPDATE audit_subjects SET subject_hmac = unhex(subject_hmac)
 WHERE typeof(subject_hmac) = 'text' AND length(subject_hmac) > 0
   AND length(subject_hmac) % 2 = 0 AND subject_hmac NOT GLOB '*[^0-9a-f]*';
