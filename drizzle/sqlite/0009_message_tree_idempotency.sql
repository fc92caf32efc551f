CREATE TABLE `idempotency_keys` (
	`owner` text NOT NULL,
	`key` text NOT NULL,
	`request_hash` text NOT NULL,
	`status` integer,
	`response` text,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`owner`, `key`)
);
--> statement-breakpoint
CREATE INDEX `idempotency_keys_created_idx` ON `idempotency_keys` (`created_at`);--> statement-breakpoint
ALTER TABLE `conversations` ADD `active_message_id` text;--> statement-breakpoint
ALTER TABLE `messages` ADD `client_id` text;--> statement-breakpoint
ALTER TABLE `messages` ADD `fingerprint` text;--> statement-breakpoint
-- Conversations written before messages formed a tree are one branch: each message follows the
-- one before it (by seq), and the last is the active leaf. Fingerprints stay null: the store
-- computes them from the rows the first time a request is matched against the conversation.
UPDATE `messages` SET `parent_message_id` = prev.`parent`
FROM (SELECT `id`, lag(`id`) OVER (PARTITION BY `conversation_id` ORDER BY `seq`) AS `parent` FROM `messages`) AS prev
WHERE prev.`id` = `messages`.`id` AND `messages`.`parent_message_id` IS NULL AND prev.`parent` IS NOT NULL;--> statement-breakpoint
UPDATE `conversations` SET `active_message_id` = (
  SELECT m.`id` FROM `messages` m WHERE m.`conversation_id` = `conversations`.`id` ORDER BY m.`seq` DESC LIMIT 1
);--> statement-breakpoint
-- The tree index last, so the data steps above do not maintain it row by row.
CREATE INDEX `messages_tree_idx` ON `messages` (`conversation_id`,`parent_message_id`,`seq`,`id`,`fingerprint`,`client_id`,`status`);
