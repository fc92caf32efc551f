-- Full-text search (GET /v1/conversations/search). Messages carry a tsvector of their content
-- under a GIN index, kept by a trigger: computed when a message is written whole, and for a
-- streamed answer each time it grows past a multiple of 2048 bytes and once more when it ends
-- (re-indexing the whole text on every delta added 3-9 ms to each 250 ms flush and re-inserted
-- every word into the GIN index each time; see the README's Search section). Titles are searched
-- through an expression index, which Postgres keeps itself. Both
-- read chat_proxy_search_text(text): the first 100 000 characters (a tsvector may not pass 1 MB),
-- accents removed, punctuation made spaces (so e-mail, URLs and snake_case split into words as
-- SQLite's unicode61 splits them, rather than into Postgres's email/url/host tokens), and CJK
-- characters spaced apart so each is a word (the same ranges as db/search-text.ts). The 'simple'
-- configuration lowercases and keeps every word: conversations mix languages, and stemming or
-- stop words for one language would lose words of the others.
--
-- unaccent is a trusted extension (any role with CREATE on the database may install it). Where it
-- cannot be installed, accents of the Latin-1 and Latin Extended-A letters are folded by
-- translate() instead, and the migration says so in a notice.
DO $migration$
DECLARE
  ext_schema text;
BEGIN
  BEGIN
    CREATE EXTENSION IF NOT EXISTS unaccent;
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'search: the unaccent extension is not available (%); accents are folded for Latin letters only', SQLERRM;
  END;
  SELECT extnamespace::regnamespace::text INTO ext_schema FROM pg_extension WHERE extname = 'unaccent';
  -- Function bodies name their schemas: a restore (pg_dump) rebuilds the title index with an empty search_path.
  IF ext_schema IS NOT NULL THEN
    EXECUTE format(
      'CREATE FUNCTION %I.chat_proxy_unaccent(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
      current_schema(), format('SELECT %s.unaccent(%L::regdictionary, t)', ext_schema, ext_schema || '.unaccent'));
  ELSE
    EXECUTE format(
      'CREATE FUNCTION %I.chat_proxy_unaccent(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
      current_schema(), 'SELECT translate(t, '
        || quote_literal('ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžŁłØøĐđĦħıĿŀŦŧÐð')
        || ', '
        || quote_literal('AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaAaAaCcCcCcCcDdEeEeEeEeEeGgGgGgGgHhIiIiIiIiIJjKkLlLlLlNnNnNnOoOoOoRrRrRrSsSsSsSsTtTtUuUuUuUuUuUuWwYyYZzZzZzLlOoDdHhiLlTtDd')
        || ')');
  END IF;
  EXECUTE format(
    'CREATE FUNCTION %I.chat_proxy_search_text(t text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
    current_schema(), format(
      'SELECT regexp_replace(%I.chat_proxy_unaccent(left(t, 100000)), %L, %L, %L)',
      current_schema(),
      '[[:punct:]]|([\u3005-\u3007\u3040-\u30FF\u31F0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF\uFF66-\uFF9F\U00020000-\U0003FFFF])',
      ' \1 ', 'g'));
END
$migration$;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "search_vector" tsvector;--> statement-breakpoint
UPDATE "messages" SET "search_vector" = to_tsvector('simple', chat_proxy_search_text("content"));--> statement-breakpoint
CREATE FUNCTION chat_proxy_index_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- octet_length reads a stored text's size from its header, without decompressing it.
  IF TG_OP = 'INSERT' OR NEW."status" NOT IN ('draft', 'streaming')
    OR octet_length(NEW."content") / 2048 > octet_length(OLD."content") / 2048 THEN
    NEW."search_vector" := to_tsvector('simple', chat_proxy_search_text(NEW."content"));
  END IF;
  RETURN NEW;
END
$$;--> statement-breakpoint
-- Status changes close a stream (finishMessage, the orphan sweep); lease renewals and the like
-- touch neither column and do not re-index.
CREATE TRIGGER "messages_search" BEFORE INSERT OR UPDATE OF "content", "status" ON "messages"
FOR EACH ROW EXECUTE FUNCTION chat_proxy_index_message();--> statement-breakpoint
CREATE INDEX "messages_search_idx" ON "messages" USING gin ("search_vector");--> statement-breakpoint
-- A search ranks at most the newest few thousand matches of its caller: for a word in most
-- messages, walking messages newest first until enough match beats fetching every match.
CREATE INDEX "messages_created_idx" ON "messages" ("created_at");--> statement-breakpoint
CREATE INDEX "conversations_title_search_idx" ON "conversations" USING gin (to_tsvector('simple', chat_proxy_search_text("title")));
