-- A patient's items of every status (the patient's page), newest history included.
create index followups_patient on followups (patient_id, opened_at);
