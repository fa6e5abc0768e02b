-- 0021: the Today page counts a day's jobs, calls, numbers, messages and open follow-up items
-- per area without looking each row's patient up. Each of those rows carries the area its
-- patient had when it was written, filled by a trigger whatever writes it (a patient who moves
-- later counts where they were then), and an index holds what the page counts.

alter table jobs add column area text;
alter table calls add column area text;
alter table processing_numbers add column area text;
alter table outbox add column area text;
alter table followups add column area text;

update jobs j set area = p.area from patients p where p.patient_id = j.patient_id;
update calls c set area = p.area from patients p where p.patient_id = c.patient_id;
update processing_numbers n set area = p.area from patients p where p.patient_id = n.patient_id;
update outbox o set area = p.area from patients p where p.patient_id = o.patient_id;
update followups f set area = p.area from patients p where p.patient_id = f.patient_id;

-- The row's patient's area, for any of the tables above (each has `patient_id` and `area`).
create function row_area() returns trigger language plpgsql as $$
begin
    if new.patient_id is not null then
        select p.area into new.area from patients p where p.patient_id = new.patient_id;
    end if;
    return new;
end
$$;

create trigger jobs_area before insert on jobs for each row execute function row_area();
create trigger calls_area before insert or update of patient_id on calls for each row execute function row_area();
create trigger processing_numbers_area before insert on processing_numbers for each row execute function row_area();
create trigger outbox_area before insert on outbox for each row execute function row_area();
create trigger followups_area before insert on followups for each row execute function row_area();

drop index calls_created;
create index calls_created on calls (created_at, area, incomplete);
create index jobs_day_area on jobs (day, area, status, attempt);
drop index processing_numbers_issued;
create index processing_numbers_issued on processing_numbers (issued_at, area);
drop index outbox_created;
create index outbox_created on outbox (created_at, channel, status, area);
create index followups_open_area on followups (area) where status <> 'closed';
