-- 0004: the roster file's columns. `call_slot` names the patient's preferred call slot (one of
-- the scheduler's slots, e.g. morning or afternoon); null means the first configured slot.
alter table patients add column call_slot text;
