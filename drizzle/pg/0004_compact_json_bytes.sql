-- stored_bytes counted jsonb's display text ({"a": 1, "b": [1, 2]}), a space after every ':' and
-- ',', where SQLite counts the compact JSON it stores and the byte limit predicts (JSON.stringify):
-- the same message counted more in Postgres. chat_proxy_json_bytes is the compact length: the
-- display text less one byte per key (': ') and per separator (', '). (Numbers jsonb prints
-- another way, such as 1e21, still differ by their digits.)
CREATE FUNCTION chat_proxy_json_bytes(j jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT octet_length(j::text) - coalesce((
    SELECT sum(CASE jsonb_typeof(v)
      WHEN 'object' THEN (SELECT greatest(2 * count(*) - 1, 0) FROM jsonb_object_keys(v))
      WHEN 'array' THEN greatest(jsonb_array_length(v) - 1, 0)
      ELSE 0 END)
    FROM jsonb_path_query(j, 'strict $.**') AS v), 0)
$$;--> statement-breakpoint
CREATE OR REPLACE FUNCTION chat_proxy_count_message_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW."status" NOT IN ('draft', 'streaming') AND (TG_OP = 'INSERT' OR OLD."status" IN ('draft', 'streaming')) THEN
    UPDATE "conversations" SET "stored_bytes" = "stored_bytes" + octet_length(NEW."content")
      + coalesce(chat_proxy_json_bytes(NEW."content_json"), 0) + coalesce(chat_proxy_json_bytes(NEW."tool_calls"), 0)
      + coalesce(chat_proxy_json_bytes(NEW."function_call"), 0)
    WHERE "id" = NEW."conversation_id";
  END IF;
  RETURN NULL;
END
$$;--> statement-breakpoint
-- Recount with the compact lengths, finished messages only, as the trigger counts them.
UPDATE "conversations" SET "stored_bytes" = (
  SELECT coalesce(sum(octet_length(m."content") + coalesce(chat_proxy_json_bytes(m."content_json"), 0)
    + coalesce(chat_proxy_json_bytes(m."tool_calls"), 0) + coalesce(chat_proxy_json_bytes(m."function_call"), 0)), 0)
  FROM "messages" m WHERE m."conversation_id" = "conversations"."id" AND m."status" NOT IN ('draft', 'streaming')
);
