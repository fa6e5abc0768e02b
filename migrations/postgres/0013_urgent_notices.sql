-- 0013: urgent follow-up items told to the on-duty contacts. One row per notice of an item:
-- step 0 is the first notice, each later step an escalation to the next list on duty. The
-- primary key makes a notice happen once, whichever instance writes it first; the notice's
-- messages are written to the outbox in the same transaction.

create table urgent_notices (
    followup_id bigint not null references followups (followup_id),
    step        integer not null,
    list_index  integer not null,               -- the list's place in [[alerts.on_duty]], from 0
    list_name   text not null,
    messages    integer not null,               -- outbox messages written for it
    sent_at     timestamptz not null,
    primary key (followup_id, step)
);
