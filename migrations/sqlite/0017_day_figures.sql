-- 0017: the Today page's and the flows page's reads. The calls, processing numbers and SMS of
-- one day are found by their time, not by reading every row ever written; the calls run on a
-- flow version are counted from an index.
create index calls_created on calls (created_at);
create index outbox_created on outbox (created_at);
create index calls_flow_version on calls (flow_version);
