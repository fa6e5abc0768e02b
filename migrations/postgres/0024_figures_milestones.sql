-- 0024: the ministry's figures count each patient once, on the day they were first asked the
-- app question, first said they use the app and first consented (the shipped flow's answers
-- `app_use` and `consent`, `yes`), as a number counts once on the day it was issued: the days
-- of a month add up to the month, and a month is counted from three small indexes instead of
-- every answer to the question (a patient asked on each of ten calls was ten answers). Kept on
-- the patient's row by a trigger on `answers` whatever writes them; filled from the answers
-- already stored.

alter table patients add column app_asked_at timestamptz;
alter table patients add column app_user_at timestamptz;
alter table patients add column consent_at timestamptz;

update patients p set app_asked_at = m.asked, app_user_at = m.app_user, consent_at = m.consent
  from (select patient_id,
               min(created_at) filter (where name = 'app_use') as asked,
               min(created_at) filter (where name = 'app_use' and value_text = 'yes') as app_user,
               min(created_at) filter (where name = 'consent' and value_text = 'yes') as consent
          from answers where name in ('app_use', 'consent') and patient_id is not null
         group by patient_id) m
 where m.patient_id = p.patient_id;

create function answers_milestones() returns trigger language plpgsql as $$
begin
    if new.patient_id is not null and new.name in ('app_use', 'consent') then
        update patients set
            app_asked_at = case when new.name = 'app_use' then least(app_asked_at, new.created_at) else app_asked_at end,
            app_user_at = case when new.name = 'app_use' and new.value_text = 'yes'
                               then least(app_user_at, new.created_at) else app_user_at end,
            consent_at = case when new.name = 'consent' and new.value_text = 'yes'
                              then least(consent_at, new.created_at) else consent_at end
         where patient_id = new.patient_id;
    end if;
    return null;
end
$$;

create trigger answers_milestones after insert or update of value_text on answers
for each row execute function answers_milestones();

create index patients_app_asked on patients (app_asked_at, area);
create index patients_app_user on patients (app_user_at, area);
create index patients_consent on patients (consent_at, area);
drop index answers_figures;
