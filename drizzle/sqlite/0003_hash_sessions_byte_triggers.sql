-- Session ids are bearer credentials: keep only their SHA-256 (hex). chat_proxy_sha256_hex is
-- registered on the connection by the SQLite store before it migrates.
UPDATE `sessions` SET `id` = chat_proxy_sha256_hex(`id`);--> statement-breakpoint
UPDATE `conversations` SET `session_id` = chat_proxy_sha256_hex(`session_id`);--> statement-breakpoint
-- stored_bytes: what a conversation's messages hold, counted when a message is written whole or
-- finishes streaming (never per streamed delta, which would cost a write on the hot path).
UPDATE `conversations` SET `stored_bytes` = (
  SELECT coalesce(sum(length(CAST(m.`content` AS BLOB)) + coalesce(length(CAST(m.`content_json` AS BLOB)), 0)
    + coalesce(length(CAST(m.`tool_calls` AS BLOB)), 0) + coalesce(length(CAST(m.`function_call` AS BLOB)), 0)), 0)
  FROM `messages` m WHERE m.`conversation_id` = `conversations`.`id`
);--> statement-breakpoint
CREATE TRIGGER `messages_stored_bytes_insert` AFTER INSERT ON `messages`
WHEN NEW.`status` NOT IN ('draft', 'streaming')
BEGIN
  UPDATE `conversations` SET `stored_bytes` = `stored_bytes` + length(CAST(NEW.`content` AS BLOB))
    + coalesce(length(CAST(NEW.`content_json` AS BLOB)), 0) + coalesce(length(CAST(NEW.`tool_calls` AS BLOB)), 0)
    + coalesce(length(CAST(NEW.`function_call` AS BLOB)), 0)
  WHERE `id` = NEW.`conversation_id`;
END;--> statement-breakpoint
CREATE TRIGGER `messages_stored_bytes_finish` AFTER UPDATE OF `status` ON `messages`
WHEN OLD.`status` IN ('draft', 'streaming') AND NEW.`status` NOT IN ('draft', 'streaming')
BEGIN
  UPDATE `conversations` SET `stored_bytes` = `stored_bytes` + length(CAST(NEW.`content` AS BLOB))
    + coalesce(length(CAST(NEW.`content_json` AS BLOB)), 0) + coalesce(length(CAST(NEW.`tool_calls` AS BLOB)), 0)
    + coalesce(length(CAST(NEW.`function_call` AS BLOB)), 0)
  WHERE `id` = NEW.`conversation_id`;
END;
