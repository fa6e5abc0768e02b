-- 0016: the ministry's figures (/ui/figures, /api/v1/figures) read a span of days through
-- indexes only: the app question's and the consent's answers by name and time (with the
-- patient and the value, so the answers' rows are not read), patients by the day their care
-- started (with their area), numbers by the time they were issued.
create index answers_figures on answers (name, created_at, patient_id, value_text);
create index patients_care_start on patients (care_start, area);
create index processing_numbers_issued on processing_numbers (issued_at);
