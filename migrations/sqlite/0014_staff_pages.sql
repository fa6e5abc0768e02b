-- 0014: the staff pages' reads. The active queue (open and claimed items, most urgent first,
-- then longest waiting) in its order, so its first page reads only that page's rows; and a
-- patient's items of every status (the patient's page).
create index followups_active on followups (urgency desc, opened_at, followup_id) where status <> 'closed';
create index followups_patient on followups (patient_id, opened_at);
