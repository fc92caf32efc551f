ALTER TABLE "messages" ADD COLUMN "tokens_source" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "lease_owner" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "lease_expires_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "consent" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "consent_at" timestamp (3) with time zone;--> statement-breakpoint
CREATE INDEX "conversations_updated_idx" ON "conversations" USING btree ("updated_at");--> statement-breakpoint
CREATE INDEX "conversations_deleted_idx" ON "conversations" USING btree ("deleted_at");--> statement-breakpoint
CREATE INDEX "messages_status_lease_idx" ON "messages" USING btree ("status","lease_expires_at");