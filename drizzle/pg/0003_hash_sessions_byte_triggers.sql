-- Session ids are bearer credentials: keep only their SHA-256 (hex).
UPDATE "sessions" SET "id" = encode(sha256(convert_to("id", 'UTF8')), 'hex');--> statement-breakpoint
UPDATE "conversations" SET "session_id" = encode(sha256(convert_to("session_id", 'UTF8')), 'hex');--> statement-breakpoint
-- stored_bytes: what a conversation's messages hold, counted when a message is written whole or
-- finishes streaming (never per streamed delta, which would cost a write on the hot path).
UPDATE "conversations" SET "stored_bytes" = (
  SELECT coalesce(sum(octet_length(m."content") + coalesce(octet_length(m."content_json"::text), 0)
    + coalesce(octet_length(m."tool_calls"::text), 0) + coalesce(octet_length(m."function_call"::text), 0)), 0)
  FROM "messages" m WHERE m."conversation_id" = "conversations"."id"
);--> statement-breakpoint
CREATE FUNCTION chat_proxy_count_message_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW."status" NOT IN ('draft', 'streaming') AND (TG_OP = 'INSERT' OR OLD."status" IN ('draft', 'streaming')) THEN
    UPDATE "conversations" SET "stored_bytes" = "stored_bytes" + octet_length(NEW."content")
      + coalesce(octet_length(NEW."content_json"::text), 0) + coalesce(octet_length(NEW."tool_calls"::text), 0)
      + coalesce(octet_length(NEW."function_call"::text), 0)
    WHERE "id" = NEW."conversation_id";
  END IF;
  RETURN NULL;
END
$$;--> statement-breakpoint
CREATE TRIGGER "messages_stored_bytes" AFTER INSERT OR UPDATE OF "status" ON "messages"
FOR EACH ROW EXECUTE FUNCTION chat_proxy_count_message_bytes();
