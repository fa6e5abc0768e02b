-- 0007: every flow version a call started on, as the texts it was loaded from, so that after
-- a restart (the files edited meanwhile) a call in progress still finishes on its version.

create table flow_versions (
    version     text primary key,          -- hash of the flow file and its catalogues
    flow        text not null,             -- the flow's name
    source_name text not null,             -- the flow file's path when it was loaded
    source      text not null,             -- the flow file's text
    catalogs    text not null,             -- JSON: [[language, path, text], …]
    created_at  timestamptz not null default now()
);
