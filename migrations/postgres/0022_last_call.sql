-- 0022: the patients table sorts 100,000 patients by their last call's outcome without looking
-- each one's latest job up. `patients.last_job_rank` is the rank of the patient's latest job
-- (the highest `job_id`): 0 unreachable, 1 failed, 2 to retry, 3 dialling, 4 planned, 5 any
-- other (done, reported, in progress); null for a patient never planned. Kept by a trigger on
-- `jobs` whatever writes them; filled from the jobs already stored.

alter table patients add column last_job_rank integer;

create function job_rank(status text) returns integer language sql immutable as $$
    select case status when 'unreachable' then 0 when 'failed' then 1 when 'retry' then 2
                       when 'dialing' then 3 when 'planned' then 4 else 5 end
$$;

update patients p set last_job_rank = job_rank(l.status)
  from (select distinct on (patient_id) patient_id, status from jobs order by patient_id, job_id desc) l
 where l.patient_id = p.patient_id;

create function jobs_last_rank() returns trigger language plpgsql as $$
begin
    update patients set last_job_rank = (
        select job_rank(j.status) from jobs j where j.patient_id = new.patient_id order by j.job_id desc limit 1)
     where patient_id = new.patient_id;
    return null;
end
$$;

create trigger jobs_last_rank after insert or update of status on jobs
for each row when (new.patient_id is not null) execute function jobs_last_rank();
