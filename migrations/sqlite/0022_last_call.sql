-- 0022: the patients table sorts 100,000 patients by their last call's outcome without looking
-- each one's latest job up. `patients.last_job_rank` is the rank of the patient's latest job
-- (the highest `job_id`): 0 unreachable, 1 failed, 2 to retry, 3 dialling, 4 planned, 5 any
-- other (done, reported, in progress); null for a patient never planned. Kept by triggers on
-- `jobs` whatever writes them; filled from the jobs already stored.

alter table patients add column last_job_rank integer;

update patients set last_job_rank = (
    select case j.status when 'unreachable' then 0 when 'failed' then 1 when 'retry' then 2
                         when 'dialing' then 3 when 'planned' then 4 else 5 end
      from jobs j where j.patient_id = patients.patient_id order by j.job_id desc limit 1);

create trigger jobs_last_rank_insert after insert on jobs begin
    update patients set last_job_rank = (
        select case j.status when 'unreachable' then 0 when 'failed' then 1 when 'retry' then 2
                             when 'dialing' then 3 when 'planned' then 4 else 5 end
          from jobs j where j.patient_id = new.patient_id order by j.job_id desc limit 1)
     where patient_id = new.patient_id;
end;

create trigger jobs_last_rank_update after update of status on jobs when new.status <> old.status begin
    update patients set last_job_rank = (
        select case j.status when 'unreachable' then 0 when 'failed' then 1 when 'retry' then 2
                             when 'dialing' then 3 when 'planned' then 4 else 5 end
          from jobs j where j.patient_id = new.patient_id order by j.job_id desc limit 1)
     where patient_id = new.patient_id;
end;
