-- 0009: numbers that wait to be read are followed up, and calls keep only what they need.

-- Since when a number waits to be read aloud (issued on a call to a landline, or its SMS could
-- not reach the phone), and when the health centre was alerted that no call read it.
alter table processing_numbers add column read_pending_since timestamptz;
alter table processing_numbers add column unread_alerted_at timestamptz;
update processing_numbers set read_pending_since = issued_at where read_pending;
create index processing_numbers_read_pending on processing_numbers (read_pending) where read_pending;

-- When retention emptied the call of its personal data (`retention.calls_after_care_days`).
alter table calls add column anonymised_at timestamptz;

-- A call's state no longer keeps the patient's name, phone, e-mail or birth date (each turn
-- reads them from the roster), nor the birth date the caller typed at the identity check.
update calls set state = (state::jsonb #- '{vars,patient.name}' #- '{vars,patient.phone}'
    #- '{vars,patient.birth_md}' #- '{vars,patient.email}' #- '{vars,birth_md}')::text
where jsonb_typeof(state::jsonb -> 'vars') = 'object';

-- The typed birth date of the shipped flow's identity check becomes `identity = confirmed`.
update answers set name = 'identity', kind = 'text', value_text = 'confirmed', value_raw = null, value_scale = null
where name = 'birth_md'
  and not exists (select 1 from answers a where a.call_id = answers.call_id and a.name = 'identity');
delete from answers where name = 'birth_md';
