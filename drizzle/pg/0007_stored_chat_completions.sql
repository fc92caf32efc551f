CREATE TABLE "chat_completions" (
	"id" text PRIMARY KEY NOT NULL,
	"conversation_id" text NOT NULL,
	"message_id" text NOT NULL,
	"upstream_id" text,
	"model" text,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "chat_completions" ADD CONSTRAINT "chat_completions_conversation_id_conversations_id_fk" FOREIGN KEY ("conversation_id") REFERENCES "public"."conversations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "chat_completions" ADD CONSTRAINT "chat_completions_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "chat_completions_message_uq" ON "chat_completions" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "chat_completions_conversation_idx" ON "chat_completions" USING btree ("conversation_id","id");--> statement-breakpoint
CREATE INDEX "chat_completions_upstream_idx" ON "chat_completions" USING btree ("upstream_id","id");