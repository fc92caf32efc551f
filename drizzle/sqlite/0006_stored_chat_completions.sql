CREATE TABLE `chat_completions` (
	`id` text PRIMARY KEY NOT NULL,
	`conversation_id` text NOT NULL,
	`message_id` text NOT NULL,
	`upstream_id` text,
	`model` text,
	`metadata` text DEFAULT '{}' NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`conversation_id`) REFERENCES `conversations`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`message_id`) REFERENCES `messages`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `chat_completions_message_uq` ON `chat_completions` (`message_id`);--> statement-breakpoint
CREATE INDEX `chat_completions_conversation_idx` ON `chat_completions` (`conversation_id`,`id`);--> statement-breakpoint
CREATE INDEX `chat_completions_upstream_idx` ON `chat_completions` (`upstream_id`,`id`);