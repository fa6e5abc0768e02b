-- 0012: the follow-up queue (要フォロー). One item per patient who needs a person, opened by
-- an alert in the alert's own transaction; a later alert for the same patient joins the item
-- still open (at most one per patient: the partial unique index). `version` grows at every
-- change: a person's action is a compare-and-set on it, safe with several instances.

create table followups (
    followup_id bigint generated always as identity primary key,
    patient_id  text not null,
    status      text not null default 'open',   -- open | claimed | closed
    urgency     integer not null,               -- 3 urgent, 2 high, 1 normal: the most urgent reason
    opened_at   timestamptz not null,
    claimed_by  text,
    claimed_at  timestamptz,
    closed_by   text,
    closed_at   timestamptz,
    outcome     text,                           -- reached_by_phone | visited | referred_to_hospital | no_action_needed | could_not_reach
    note        text,
    version     bigint not null default 1,
    change      text not null default 'opened', -- the last change: opened | joined | claimed | released | closed
    changed_by  text not null,
    changed_at  timestamptz not null,
    created_at  timestamptz not null default now()
);
create unique index followups_one_open on followups (patient_id) where status <> 'closed';
create index followups_queue on followups (status, urgency desc, opened_at);

-- Why an item is open: each alert that opened or joined it, with its time.
create table followup_reasons (
    followup_id bigint not null references followups (followup_id),
    alert_id    bigint references alerts (alert_id),
    kind        text not null,                  -- flow | unreachable | hung_up | message_failed | …
    reason      text not null,                  -- the flow's reason, or what happened
    urgency     integer not null,
    call_id     bigint,
    created_at  timestamptz not null
);
create index followup_reasons_item on followup_reasons (followup_id);
