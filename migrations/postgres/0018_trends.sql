-- 0018: the patients table and a patient's charts. `latest_answers` holds each patient's latest
-- numeric answer of each name (the temperature and SpO2 a call recorded), kept by a trigger on
-- `answers` whatever writes them, so the table sorts 100,000 patients by a reading without
-- looking through every call; filled from the answers already stored. Only numbers are kept
-- (never digits a caller typed, which are text). A patient's latest job (the last call's
-- outcome) is found on `jobs_patient`.
create table latest_answers (
    patient_id  text not null,
    name        text not null,
    value_raw   bigint not null,            -- 365
    value_scale integer not null,           -- 1: 36.5
    value_text  text not null,
    call_id     bigint not null,
    created_at  timestamptz not null,
    primary key (patient_id, name)
);

insert into latest_answers (patient_id, name, value_raw, value_scale, value_text, call_id, created_at)
select distinct on (patient_id, name) patient_id, name, value_raw, coalesce(value_scale, 0), value_text, call_id, created_at
from answers
where kind = 'number' and patient_id is not null and value_raw is not null
order by patient_id, name, call_id desc;

create function answers_latest() returns trigger language plpgsql as $$
begin
    if new.kind = 'number' and new.patient_id is not null and new.value_raw is not null then
        insert into latest_answers (patient_id, name, value_raw, value_scale, value_text, call_id, created_at)
        values (new.patient_id, new.name, new.value_raw, coalesce(new.value_scale, 0), new.value_text, new.call_id, new.created_at)
        on conflict (patient_id, name) do update set value_raw = excluded.value_raw, value_scale = excluded.value_scale,
            value_text = excluded.value_text, call_id = excluded.call_id, created_at = excluded.created_at
        where excluded.call_id >= latest_answers.call_id;
    end if;
    return null;
end
$$;

create trigger answers_latest after insert or update on answers
for each row execute function answers_latest();

create index jobs_patient on jobs (patient_id, job_id);
