-- 0015: a call's alerts found by the call (a patient's page and the staff API read the alerts of
-- all the calls they show in one query). Without it, each read scanned every alert ever raised.
create index alerts_call on alerts (call_id);
