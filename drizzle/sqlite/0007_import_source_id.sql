ALTER TABLE `conversations` ADD `import_source_id` text;--> statement-breakpoint
CREATE INDEX `conversations_import_source_idx` ON `conversations` (`import_source_id`);