-- The access policy's decision on each request (entry format v2): 'allow' or 'deny',
-- and the ids of the determining Cedar policies as a JSON array. Both NULL for entries
-- that reached no decision, and for every entry written before this migration (format v1).
ALTER TABLE audit_entries ADD COLUMN decision TEXT CHECK (decision IN ('allow', 'deny'));
ALTER TABLE audit_entries ADD COLUMN policies TEXT;
