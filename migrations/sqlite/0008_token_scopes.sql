-- 0008: what each API token may do, and when it was last used.
-- Tokens made before scopes existed get `verify` only (least privilege): the contact app's
-- server keeps working; staff tools need a new token made with `--scope staff`.

alter table api_tokens add column scopes text not null default 'verify';  -- verify,issue,import,read
alter table api_tokens add column last_used_at text;                      -- to the minute
