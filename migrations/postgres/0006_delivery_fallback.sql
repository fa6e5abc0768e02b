-- 0006: what happens when a number cannot be delivered as planned.

-- A number whose SMS could not reach the phone (a landline) and that is read aloud on the
-- patient's next call instead; cleared once it has been read.
alter table processing_numbers add column read_pending boolean not null default false;
-- The number this one replaces, when a message would have reached the patient after its
-- number expired. A number is replaced at most once, and the replacement carries the same
-- consent, so the one-number-per-consent index leaves replacements out.
alter table processing_numbers add column reissue_of bigint references processing_numbers (number_id);
create unique index processing_numbers_reissue on processing_numbers (reissue_of) where reissue_of is not null;
drop index processing_numbers_consent;
create unique index processing_numbers_consent on processing_numbers (consent_call_id, consent_seq)
    where consent_call_id is not null and reissue_of is null;

-- The fallback taken for an SMS that could not be delivered (email | read_aloud | none), set
-- once: a replayed status callback finds it set and changes nothing.
alter table outbox add column fallback text;
