ALTER TABLE `messages` ADD `tokens_source` text;--> statement-breakpoint
ALTER TABLE `messages` ADD `lease_owner` text;--> statement-breakpoint
ALTER TABLE `messages` ADD `lease_expires_at` integer;--> statement-breakpoint
CREATE INDEX `messages_status_lease_idx` ON `messages` (`status`,`lease_expires_at`);--> statement-breakpoint
ALTER TABLE `sessions` ADD `consent` text;--> statement-breakpoint
ALTER TABLE `sessions` ADD `consent_at` integer;--> statement-breakpoint
CREATE INDEX `conversations_updated_idx` ON `conversations` (`updated_at`);--> statement-breakpoint
CREATE INDEX `conversations_deleted_idx` ON `conversations` (`deleted_at`);