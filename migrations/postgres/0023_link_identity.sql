-- 0023: the birth-date check of the web self-report is limited as on the phone. The birth dates
-- that did not match on a link's page are counted per local day; the flow's `tries`-th of a
-- day (3 in the shipped flow) revokes the link (`revoked_by` 'identity check') and alerts the
-- health centre (`identity_not_confirmed`, a follow-up item opens), as a call that gives up
-- does; staff send a new link once they have spoken with the patient.

alter table report_links add column identity_misses integer not null default 0;
alter table report_links add column identity_missed_on date;    -- the local day of the last miss
