ALTER TABLE `messages` ADD `cancel_requested_at` integer;--> statement-breakpoint
CREATE INDEX `messages_streaming_idx` ON `messages` (`conversation_id`,`seq`) WHERE status = 'streaming';