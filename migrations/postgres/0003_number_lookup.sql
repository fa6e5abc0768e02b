-- 0003: numbers looked up by hash whatever their status. Verification reads the newest row for
-- a hash (a used, revoked or expired number answers as such, and an unknown one finds none);
-- the partial unique index holds only valid numbers, so without this every verification, and
-- every guess at a number, read the whole table.
create index processing_numbers_hash on processing_numbers (number_hash);
