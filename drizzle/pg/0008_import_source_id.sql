ALTER TABLE "conversations" ADD COLUMN "import_source_id" text;--> statement-breakpoint
CREATE INDEX "conversations_import_source_idx" ON "conversations" USING btree ("import_source_id");