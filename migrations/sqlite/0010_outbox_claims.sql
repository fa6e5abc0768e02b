-- 0010: who claimed a message, and whether its send may have reached the provider, so that a
-- sender that starts again settles its own unfinished claims at once.

-- The instance that claimed the message for sending (host name and listen address) and when.
alter table outbox add column claimed_by text;
alter table outbox add column claimed_at text;
-- When a send whose outcome is not known began (the request may have reached the provider);
-- cleared once the outcome is known. Before it is sent again, the message is looked up at the
-- provider from this time on.
alter table outbox add column handed_at text;
