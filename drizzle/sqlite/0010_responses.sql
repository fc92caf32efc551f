CREATE TABLE `response_events` (
	`response_id` text NOT NULL,
	`seq` integer NOT NULL,
	`data` text NOT NULL,
	PRIMARY KEY(`response_id`, `seq`),
	FOREIGN KEY (`response_id`) REFERENCES `responses`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `responses` (
	`id` text PRIMARY KEY NOT NULL,
	`conversation_id` text NOT NULL,
	`message_id` text NOT NULL,
	`input_message_ids` text NOT NULL,
	`model` text NOT NULL,
	`instructions` text,
	`previous_response_id` text,
	`params` text NOT NULL,
	`metadata` text NOT NULL,
	`background` integer NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`conversation_id`) REFERENCES `conversations`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `responses_conversation_idx` ON `responses` (`conversation_id`);--> statement-breakpoint
CREATE INDEX `responses_message_idx` ON `responses` (`message_id`);