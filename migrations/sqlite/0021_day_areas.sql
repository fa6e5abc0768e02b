-- 0021: the Today page counts a day's jobs, calls, numbers, messages and open follow-up items
-- per area without looking each row's patient up. Each of those rows carries the area its
-- patient had when it was written, filled by a trigger whatever writes it (a patient who moves
-- later counts where they were then), and an index holds what the page counts.

alter table jobs add column area text;
alter table calls add column area text;
alter table processing_numbers add column area text;
alter table outbox add column area text;
alter table followups add column area text;

update jobs set area = (select p.area from patients p where p.patient_id = jobs.patient_id);
update calls set area = (select p.area from patients p where p.patient_id = calls.patient_id)
 where patient_id is not null;
update processing_numbers set area = (select p.area from patients p where p.patient_id = processing_numbers.patient_id);
update outbox set area = (select p.area from patients p where p.patient_id = outbox.patient_id)
 where patient_id is not null;
update followups set area = (select p.area from patients p where p.patient_id = followups.patient_id);

create trigger jobs_area after insert on jobs begin
    update jobs set area = (select area from patients where patient_id = new.patient_id) where job_id = new.job_id;
end;
create trigger calls_area after insert on calls when new.patient_id is not null begin
    update calls set area = (select area from patients where patient_id = new.patient_id) where call_id = new.call_id;
end;
create trigger calls_area_identified after update of patient_id on calls
 when new.patient_id is not old.patient_id begin
    update calls set area = (select area from patients where patient_id = new.patient_id) where call_id = new.call_id;
end;
create trigger processing_numbers_area after insert on processing_numbers begin
    update processing_numbers set area = (select area from patients where patient_id = new.patient_id)
     where number_id = new.number_id;
end;
create trigger outbox_area after insert on outbox when new.patient_id is not null begin
    update outbox set area = (select area from patients where patient_id = new.patient_id)
     where message_id = new.message_id;
end;
create trigger followups_area after insert on followups begin
    update followups set area = (select area from patients where patient_id = new.patient_id)
     where followup_id = new.followup_id;
end;

drop index calls_created;
create index calls_created on calls (created_at, area, incomplete);
create index jobs_day_area on jobs (day, area, status, attempt);
drop index processing_numbers_issued;
create index processing_numbers_issued on processing_numbers (issued_at, area);
drop index outbox_created;
create index outbox_created on outbox (created_at, channel, status, area);
create index followups_open_area on followups (area) where status <> 'closed';
