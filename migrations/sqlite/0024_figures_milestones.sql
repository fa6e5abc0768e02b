-- 0024: the ministry's figures count each patient once, on the day they were first asked the
-- app question, first said they use the app and first consented (the shipped flow's answers
-- `app_use` and `consent`, `yes`), as a number counts once on the day it was issued: the days
-- of a month add up to the month, and a month is counted from three small indexes instead of
-- every answer to the question (a patient asked on each of ten calls was ten answers). Kept on
-- the patient's row by triggers on `answers` whatever writes them; filled from the answers
-- already stored.

alter table patients add column app_asked_at text;
alter table patients add column app_user_at text;
alter table patients add column consent_at text;

update patients set
    app_asked_at = (select min(a.created_at) from answers a
                     where a.patient_id = patients.patient_id and a.name = 'app_use'),
    app_user_at = (select min(a.created_at) from answers a
                    where a.patient_id = patients.patient_id and a.name = 'app_use' and a.value_text = 'yes'),
    consent_at = (select min(a.created_at) from answers a
                   where a.patient_id = patients.patient_id and a.name = 'consent' and a.value_text = 'yes');

create trigger answers_milestones_insert after insert on answers
 when new.patient_id is not null and new.name in ('app_use', 'consent') begin
    update patients set
        app_asked_at = case when new.name = 'app_use' and (app_asked_at is null or app_asked_at > new.created_at)
                            then new.created_at else app_asked_at end,
        app_user_at = case when new.name = 'app_use' and new.value_text = 'yes'
                                and (app_user_at is null or app_user_at > new.created_at)
                           then new.created_at else app_user_at end,
        consent_at = case when new.name = 'consent' and new.value_text = 'yes'
                               and (consent_at is null or consent_at > new.created_at)
                          then new.created_at else consent_at end
     where patient_id = new.patient_id;
end;

create trigger answers_milestones_update after update of value_text on answers
 when new.patient_id is not null and new.name in ('app_use', 'consent') begin
    update patients set
        app_asked_at = case when new.name = 'app_use' and (app_asked_at is null or app_asked_at > new.created_at)
                            then new.created_at else app_asked_at end,
        app_user_at = case when new.name = 'app_use' and new.value_text = 'yes'
                                and (app_user_at is null or app_user_at > new.created_at)
                           then new.created_at else app_user_at end,
        consent_at = case when new.name = 'consent' and new.value_text = 'yes'
                               and (consent_at is null or consent_at > new.created_at)
                          then new.created_at else consent_at end
     where patient_id = new.patient_id;
end;

create index patients_app_asked on patients (app_asked_at, area);
create index patients_app_user on patients (app_user_at, area);
create index patients_consent on patients (consent_at, area);
drop index answers_figures;
